//! Jobs and their results.

use crate::devices::{Device, DEVICE_COLUMNS, DEVICE_PREFIX};
use crate::{enum_col, ms_col, opt_enum_col, parse_text, push_window, Window};
use chrono::{DateTime, Duration, Utc};
use qcloud_core::{JobStatus, Priority, SessionMode, SessionState};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, QueryBuilder, Row};
use uuid::Uuid;

/// A job as stored (its result lives apart, in `job_results`).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    /// Arrival order (first come, first served within a priority).
    pub seq: i64,
    pub project: String,
    pub user_name: String,
    pub device: String,
    pub session_id: Option<Uuid>,
    pub program: String,
    pub payload: serde_json::Value,
    pub shots: Option<i64>,
    pub tags: Vec<String>,
    pub priority: Priority,
    pub status: JobStatus,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    pub attempt: i32,
    pub parent_id: Option<Uuid>,
    pub idempotency_key: Option<String>,
    pub max_execution: Duration,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub usage_seconds: f64,
    pub cancel_requested: bool,
    pub assigned_term: Option<i64>,
    pub lease_owner: Option<Uuid>,
    pub lease_epoch: i64,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// What an agent last said of the running job (agent devices).
    pub progress_message: Option<String>,
    pub progress_fraction: Option<f64>,
    /// The log an agent sent with the job's end (the tail of its program's stderr).
    pub log: Option<String>,
}

impl<'r> FromRow<'r, PgRow> for Job {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Job {
            id: row.try_get("id")?,
            seq: row.try_get("seq")?,
            project: row.try_get("project")?,
            user_name: row.try_get("user_name")?,
            device: row.try_get("device")?,
            session_id: row.try_get("session_id")?,
            program: row.try_get("program")?,
            payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
            shots: row.try_get("shots")?,
            tags: row.try_get("tags")?,
            priority: Priority::from_rank(row.try_get("priority")?),
            status: enum_col(row, "status")?,
            reason: row.try_get("reason")?,
            reason_code: row.try_get("reason_code")?,
            attempt: row.try_get("attempt")?,
            parent_id: row.try_get("parent_id")?,
            idempotency_key: row.try_get("idempotency_key")?,
            max_execution: ms_col(row, "max_execution_ms")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            usage_seconds: row.try_get("usage_seconds")?,
            cancel_requested: row.try_get("cancel_requested")?,
            assigned_term: row.try_get("assigned_term")?,
            lease_owner: row.try_get("lease_owner")?,
            lease_epoch: row.try_get("lease_epoch")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            progress_message: row.try_get("progress_message")?,
            progress_fraction: row.try_get("progress_fraction")?,
            log: row.try_get("log")?,
        })
    }
}

/// A job that just started, with what its worker needs besides the job: the mode of its session
/// (batch sessions prepare ahead; `None` outside a session).
#[derive(Debug, Clone)]
pub struct Started {
    pub job: Job,
    pub session_mode: Option<SessionMode>,
}

impl<'r> FromRow<'r, PgRow> for Started {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Started { job: Job::from_row(row)?, session_mode: opt_enum_col(row, "session_mode")? })
    }
}

pub struct NewJob<'a> {
    pub id: Uuid,
    pub project: &'a str,
    pub user: &'a str,
    pub device: &'a str,
    pub session_id: Option<Uuid>,
    pub program: &'a str,
    pub payload: &'a serde_json::Value,
    pub shots: Option<i64>,
    pub tags: &'a [String],
    pub priority: Priority,
    pub idempotency_key: Option<&'a str>,
    /// SHA-256 of the request in canonical form, stored with an idempotency key.
    pub request_hash: Option<&'a [u8]>,
    pub max_execution: Duration,
}

/// A job just inserted, and whether its device had no running job at that moment (only then is
/// a wake-up needed: a busy device's completion picks the next job itself).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Inserted {
    #[sqlx(flatten)]
    pub job: Job,
    pub device_idle: bool,
}

/// The insert both [`insert`] and [`insert_waking`] start with, as the CTE `ins` (parameters $1-$13,
/// bound by [`bind_new_job`]).
const INSERT_JOB: &str = "WITH ins AS (
            INSERT INTO jobs (id, project, user_name, device, session_id, program, payload, shots, tags,
                    priority, idempotency_key, max_execution_ms, request_hash)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            ON CONFLICT ON CONSTRAINT jobs_idempotency_key_unique DO NOTHING
            RETURNING *)";

fn bind_new_job<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    j: &NewJob<'q>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(j.id)
        .bind(j.project)
        .bind(j.user)
        .bind(j.device)
        .bind(j.session_id)
        .bind(j.program)
        .bind(Json(j.payload))
        .bind(j.shots)
        .bind(j.tags)
        .bind(j.priority.rank())
        .bind(j.idempotency_key)
        .bind(j.max_execution.num_milliseconds())
        .bind(j.request_hash)
}

/// Insert a job. With an idempotency key already used by the project, nothing is inserted and
/// `None` is returned.
pub async fn insert(conn: &mut PgConnection, j: NewJob<'_>) -> sqlx::Result<Option<Inserted>> {
    let sql = format!(
        "{INSERT_JOB}
         SELECT ins.*, NOT EXISTS (SELECT 1 FROM jobs r WHERE r.device = ins.device AND r.status = 'running')
                AS device_idle
         FROM ins"
    );
    bind_new_job(sqlx::query_as(&sql), &j).fetch_optional(conn).await
}

/// [`insert`] and, when the device had no running job, `NOTIFY qcloud_wake '<device>'`, in one
/// statement: run outside an explicit transaction it is one round trip and one implicit
/// transaction (the insert and its wake-up commit together, or neither does).
pub async fn insert_waking(conn: &mut PgConnection, j: NewJob<'_>) -> sqlx::Result<Option<Inserted>> {
    let sql = format!("{INSERT_JOB}{WAKE_IF_IDLE}");
    bind_new_job(sqlx::query_as(&sql), &j).bind(crate::channel::WAKE).fetch_optional(conn).await
}

/// The end of [`insert_waking`] and [`insert_into_session`], after their CTE `ins`: the inserted
/// job, whether its device had no running job, and then `NOTIFY` on channel `$14`.
const WAKE_IF_IDLE: &str = ",
         idle AS (
            SELECT ins.*, NOT EXISTS (SELECT 1 FROM jobs r WHERE r.device = ins.device AND r.status = 'running')
                   AS device_idle
            FROM ins)
         SELECT idle.*,
                CASE WHEN idle.device_idle THEN (SELECT 1 FROM pg_notify($14, idle.device) AS x) END AS woke
         FROM idle";

/// A session job without an idempotency key (a keyed job takes [`insert`] in a transaction, which
/// answers a replay), in one statement (one implicit transaction when run
/// outside an explicit one): the session row is touched (`last_job_submitted`, which also locks it
/// against a concurrent close) only when it is the caller's, open, accepting jobs and on
/// `j.device`; the job is inserted only then, with the session's priority unless `own_priority`;
/// and the device is woken (`NOTIFY qcloud_wake`) when it had no running job. `None` when the
/// session refused (nothing changed): the caller reads the session to say why.
pub async fn insert_into_session(
    conn: &mut PgConnection,
    j: NewJob<'_>,
    own_priority: bool,
) -> sqlx::Result<Option<Inserted>> {
    // The parameters of [`bind_new_job`], then the wake-up channel ($14) and `own_priority` ($15).
    let sql = format!(
        "WITH s AS (
            UPDATE sessions SET last_job_submitted = now()
            WHERE id = $5 AND project = $2 AND device = $4 AND state <> 'closed' AND accepting_jobs
            RETURNING id, priority),
         ins AS (
            INSERT INTO jobs (id, project, user_name, device, session_id, program, payload, shots, tags,
                    priority, idempotency_key, max_execution_ms, request_hash)
            SELECT $1, $2, $3, $4, s.id, $6, $7, $8, $9, CASE WHEN $15 THEN $10 ELSE s.priority END, $11, $12, $13
            FROM s
            RETURNING *){WAKE_IF_IDLE}"
    );
    bind_new_job(sqlx::query_as(&sql), &j).bind(crate::channel::WAKE).bind(own_priority).fetch_optional(conn).await
}

/// One job of a bulk insert (no idempotency key: a bulk request is one unit).
pub struct BulkJob<'a> {
    pub id: Uuid,
    pub device: &'a str,
    pub program: &'a str,
    pub payload: &'a serde_json::Value,
    pub shots: Option<i64>,
    /// Stored as a text array literal per job (`UNNEST` cannot take an array of arrays of
    /// different lengths).
    pub tags: &'a [String],
    pub priority: Priority,
    pub max_execution: Duration,
}

/// What a bulk insert stored: how many rows, and their `created_at` (the column's default,
/// `now()`: the transaction's start, the same for every row of the statement).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct BulkInserted {
    pub count: i64,
    pub created_at: Option<DateTime<Utc>>,
}

/// Insert many job-mode jobs of one project and user in one statement (`UNNEST` of one array per
/// column, in the order given: `seq` follows it), and wake each device that had no running job
/// (`NOTIFY qcloud_wake`, once per device). Returns how many rows were stored and when, not the
/// rows: every other column of a new job is its default (queued, attempt 0, no start, ...), which
/// the caller knows, and reading 10,000 rows back (payloads included) cost more than writing them.
pub async fn insert_bulk(
    conn: &mut PgConnection,
    project: &str,
    user: &str,
    jobs: &[BulkJob<'_>],
) -> sqlx::Result<BulkInserted> {
    let n = jobs.len();
    let (mut ids, mut devices, mut programs, mut payloads, mut shots, mut tags, mut prios, mut max_ms) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for j in jobs {
        ids.push(j.id);
        devices.push(j.device);
        programs.push(j.program);
        payloads.push(Json(j.payload));
        shots.push(j.shots);
        // A JSON array of strings: decoded into text[] in SQL.
        tags.push(Json(j.tags));
        prios.push(j.priority.rank());
        max_ms.push(j.max_execution.num_milliseconds());
    }
    sqlx::query_as(
        "WITH ins AS (
            INSERT INTO jobs (id, project, user_name, device, program, payload, shots, tags, priority,
                    max_execution_ms)
            SELECT id, $1, $2, device, program, payload, shots,
                   ARRAY(SELECT jsonb_array_elements_text(tags)), priority, max_ms
            FROM UNNEST($3::uuid[], $4::text[], $5::text[], $6::jsonb[], $7::int8[], $8::jsonb[],
                        $9::int2[], $10::int8[]) WITH ORDINALITY
                 AS t(id, device, program, payload, shots, tags, priority, max_ms, ord)
            ORDER BY ord
            RETURNING device, created_at),
         idle AS (
            SELECT DISTINCT ins.device FROM ins
            WHERE NOT EXISTS (SELECT 1 FROM jobs r WHERE r.device = ins.device AND r.status = 'running')),
         woke AS (SELECT count(*) AS n FROM idle CROSS JOIN LATERAL pg_notify($11, idle.device) AS x)
         SELECT count(*) AS count, min(ins.created_at) AS created_at FROM ins, woke",
    )
    .bind(project)
    .bind(user)
    .bind(ids)
    .bind(devices)
    .bind(programs)
    .bind(payloads)
    .bind(shots)
    .bind(tags)
    .bind(prios)
    .bind(max_ms)
    .bind(crate::channel::WAKE)
    .fetch_one(conn)
    .await
}

/// The job an idempotency key names, with the hash of the request that created it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyedJob {
    #[sqlx(flatten)]
    pub job: Job,
    pub request_hash: Option<Vec<u8>>,
}

pub async fn by_idempotency_key(conn: &mut PgConnection, project: &str, key: &str) -> sqlx::Result<Option<KeyedJob>> {
    sqlx::query_as("SELECT * FROM jobs WHERE project = $1 AND idempotency_key = $2")
        .bind(project)
        .bind(key)
        .fetch_optional(conn)
        .await
}

/// Take an expired idempotency key off its old job, so that it can name a new one.
pub async fn expire_idempotency_key(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("UPDATE jobs SET idempotency_key = NULL WHERE id = $1").bind(id).execute(conn).await?;
    Ok(())
}

/// A job of `project` (another project's job is not found).
pub async fn get(conn: &mut PgConnection, project: &str, id: Uuid) -> sqlx::Result<Option<Job>> {
    sqlx::query_as("SELECT * FROM jobs WHERE id = $1 AND project = $2")
        .bind(id)
        .bind(project)
        .fetch_optional(conn)
        .await
}

pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Job>> {
    sqlx::query_as("SELECT * FROM jobs WHERE id = $1 FOR NO KEY UPDATE").bind(id).fetch_optional(conn).await
}

/// 1-based position of a queued job among the queued jobs of its device, in rule-3 order
/// (priority, then arrival; fair share can still reorder projects).
pub async fn queue_position(conn: &mut PgConnection, job: &Job) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) + 1 FROM job_queue WHERE device = $1
           AND (priority > $2 OR (priority = $2 AND seq < $3))",
    )
    .bind(&job.device)
    .bind(job.priority.rank())
    .bind(job.seq)
    .fetch_one(conn)
    .await
}

pub async fn result(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Json<serde_json::Value>>> {
    sqlx::query_scalar("SELECT result FROM job_results WHERE job_id = $1").bind(id).fetch_optional(conn).await
}

/// A job of `project` with its stored result (none until it completes), in one query.
#[derive(Debug, sqlx::FromRow)]
pub struct WithResult {
    #[sqlx(flatten)]
    pub job: Job,
    pub stored_result: Option<Json<serde_json::Value>>,
}

pub async fn get_with_result(conn: &mut PgConnection, project: &str, id: Uuid) -> sqlx::Result<Option<WithResult>> {
    sqlx::query_as(
        "SELECT j.*, r.result AS stored_result FROM jobs j LEFT JOIN job_results r ON r.job_id = j.id
         WHERE j.id = $1 AND j.project = $2",
    )
    .bind(id)
    .bind(project)
    .fetch_optional(conn)
    .await
}

pub async fn running_on(conn: &mut PgConnection, device: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT id FROM jobs WHERE device = $1 AND status = 'running'")
        .bind(device)
        .fetch_optional(conn)
        .await
}

/// One of rule 3's candidates: a job-mode job at the head of its project's queue, or a waiting
/// session with a queued job.
#[derive(Debug, Clone)]
pub struct CandidateRow {
    pub is_session: bool,
    pub id: Uuid,
    pub project: String,
    pub priority: Priority,
    /// Arrival order of the job (a session: of its first queued job).
    pub seq: i64,
}

impl<'r> FromRow<'r, PgRow> for CandidateRow {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(CandidateRow {
            is_session: row.try_get("is_session")?,
            id: row.try_get("id")?,
            project: row.try_get("project")?,
            priority: Priority::from_rank(row.try_get("priority")?),
            seq: row.try_get("seq")?,
        })
    }
}

/// Rule 3's candidates of a device in one query: the head of each project's job-mode queue (found
/// by a loose index scan on `job_queue_heads`, one probe per project), and the waiting sessions
/// (pending or inactive) with a queued job; each as (is_session, id, project, priority, arrival
/// sequence). `limit` bounds the projects and the sessions considered.
pub async fn candidates(conn: &mut PgConnection, device: &str, limit: i64) -> sqlx::Result<Vec<CandidateRow>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| candidates_of("$1"));
    sqlx::query_as(&SQL).bind(device).bind(limit).fetch_all(conn).await
}

/// [`candidates`] of several devices in one query, each row with its device.
pub async fn candidates_many(
    conn: &mut PgConnection,
    devices: &[String],
    limit: i64,
) -> sqlx::Result<Vec<(String, CandidateRow)>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT dev.name AS candidate_device, c.* FROM unnest($1::text[]) AS dev(name)
             CROSS JOIN LATERAL ({}) c",
            candidates_of("dev.name")
        )
    });
    let rows: Vec<PgRow> = sqlx::query(&SQL).persistent(false).bind(devices).bind(limit).fetch_all(conn).await?;
    rows.iter().map(|r| Ok((r.try_get("candidate_device")?, CandidateRow::from_row(r)?))).collect()
}

/// The candidates query of [`candidates`] for the device `device` (a parameter or a column),
/// with `$2` as the limit.
fn candidates_of(device: &str) -> String {
    format!(
        "(WITH RECURSIVE heads AS (
            (SELECT job_id AS id, project, priority, seq FROM job_queue
             WHERE device = {device} AND session_id IS NULL
             ORDER BY project, priority DESC, seq LIMIT 1)
            UNION ALL
            SELECT n.* FROM heads h CROSS JOIN LATERAL (
                SELECT job_id AS id, project, priority, seq FROM job_queue
                WHERE device = {device} AND session_id IS NULL AND project > h.project
                ORDER BY project, priority DESC, seq LIMIT 1) n)
          SELECT false AS is_session, id, project, priority, seq FROM heads LIMIT $2)
         UNION ALL
         (SELECT true, s.id, s.project, s.priority, q.seq FROM sessions s
          CROSS JOIN LATERAL (SELECT min(seq) AS seq FROM job_queue j WHERE j.session_id = s.id) q
          WHERE s.device = {device} AND s.state IN ('pending', 'inactive') AND q.seq IS NOT NULL
          ORDER BY s.priority DESC, q.seq LIMIT $2)"
    )
}

/// The next queued job of a session (arrival order).
pub async fn next_in_session(conn: &mut PgConnection, session: Uuid) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar("SELECT job_id FROM job_queue WHERE session_id = $1 ORDER BY seq LIMIT 1")
        .bind(session)
        .fetch_optional(conn)
        .await
}

/// Queued jobs of a session, after the first `skip`, for preparing ahead (rule 12).
pub async fn queued_in_session(conn: &mut PgConnection, session: Uuid, limit: i64) -> sqlx::Result<Vec<Job>> {
    sqlx::query_as(
        "SELECT j.* FROM job_queue q JOIN jobs j ON j.id = q.job_id WHERE q.session_id = $1 ORDER BY q.seq LIMIT $2",
    )
    .bind(session)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// queued -> running (and the session's `last_job_started`). With `owner`, the caller's replica
/// holds the lease at once (it will run the job); without, workers claim it, and the same
/// statement sends `NOTIFY qcloud_run` (delivered at commit). Returns the row when
/// the job was still queued. The caller holds the session's lock already (lock order).
///
/// `started_at` and `finished_at` are `clock_timestamp()`, not `now()`: `now()` is when the
/// transaction began, which can be before the device was handed over (a dispatch that began, then
/// waited for the device lock while the previous job ended), and the recorded intervals of one
/// device must not overlap.
pub async fn start(
    conn: &mut PgConnection,
    id: Uuid,
    term: Option<i64>,
    owner: Option<Uuid>,
    lease_ms: i64,
) -> sqlx::Result<Option<Started>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| start_one_sql("$1"));
    start_one(conn, &SQL, id, term, owner, lease_ms).await
}

/// The assignments of a start: running since now, for the leader's term `$2` or leased to the
/// worker `$3` for `$4` ms (a new attempt), or (neither) unowned, for a claimer or an agent.
const START_SET: &str = "status = 'running', started_at = clock_timestamp(), assigned_term = $2, lease_owner = $3,
                   lease_epoch = lease_epoch + CASE WHEN $3::uuid IS NULL THEN 0 ELSE 1 END,
                   attempt = attempt + CASE WHEN $3::uuid IS NULL THEN 0 ELSE 1 END,
                   lease_expires_at = CASE WHEN $3::uuid IS NULL THEN NULL
                                           ELSE now() + make_interval(secs => $4::float8 / 1000) END";

/// The statement that starts the queued job `job` (an SQL expression of `$1`): the job, its
/// session's `last_job_started`, and without an owner `NOTIFY` on channel `$5`.
fn start_one_sql(job: &str) -> String {
    format!(
        "WITH started AS (
            UPDATE jobs SET {START_SET}
            WHERE id = {job} AND status = 'queued' RETURNING *),
         session AS (
            UPDATE sessions SET last_job_started = started.started_at FROM started
            WHERE sessions.id = started.session_id RETURNING sessions.mode)
         SELECT started.*, (SELECT mode FROM session) AS session_mode,
                CASE WHEN $3::uuid IS NULL THEN (SELECT 1 FROM pg_notify($5, started.device) AS x) END AS woke
         FROM started"
    )
}

/// Run a statement of [`start_one_sql`] with `key` as `$1`.
async fn start_one(
    conn: &mut PgConnection,
    sql: &str,
    key: Uuid,
    term: Option<i64>,
    owner: Option<Uuid>,
    lease_ms: i64,
) -> sqlx::Result<Option<Started>> {
    sqlx::query_as(sql)
        .bind(key)
        .bind(term)
        .bind(owner)
        .bind(lease_ms)
        .bind(crate::channel::RUN)
        .fetch_optional(conn)
        .await
}

/// [`start`] the next queued job of a session (arrival order, as [`next_in_session`] picks it),
/// in one statement. `None` when the session has no queued job (or it stopped being queued
/// meanwhile, as with [`start`]).
pub async fn start_next_in_session(
    conn: &mut PgConnection,
    session: Uuid,
    term: Option<i64>,
    owner: Option<Uuid>,
    lease_ms: i64,
) -> sqlx::Result<Option<Started>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        start_one_sql("(SELECT job_id FROM job_queue WHERE session_id = $1 ORDER BY seq LIMIT 1)")
    });
    start_one(conn, &SQL, session, term, owner, lease_ms).await
}

/// [`start`] several job-mode jobs at once, each leased to the worker `owner` (a batched
/// completion's next jobs: rule 3's job candidates, which come from the job-mode queue, so no
/// session's `last_job_started` is due). Jobs that stopped being queued meanwhile are left out.
/// (No `session_id IS NULL` test here: with statistics that lag a fast-growing queue, the planner
/// took it to an index scan of `jobs_session` over every queued job-mode job, instead of the
/// primary key.)
pub async fn start_many(
    conn: &mut PgConnection,
    ids: &[Uuid],
    owner: Uuid,
    lease_ms: i64,
) -> sqlx::Result<Vec<Started>> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "UPDATE jobs SET {START_SET}
             WHERE id = ANY($1) AND status = 'queued'
             RETURNING *, NULL::text AS session_mode"
        )
    });
    sqlx::query_as(&SQL).persistent(false).bind(ids).bind(None::<i64>).bind(owner).bind(lease_ms).fetch_all(conn).await
}

/// A claimed job with its device, read in the claim's statement.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub started: Started,
    pub device: Device,
}

impl<'r> FromRow<'r, PgRow> for Claimed {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Ok(Claimed { started: Started::from_row(row)?, device: Device::from_columns(row, DEVICE_PREFIX)? })
    }
}

/// Claim up to `limit` assigned jobs that no worker holds, each with its session's mode and its
/// device, in one statement. Jobs of agent devices are left to their agents
/// ([`crate::agents::claim`]).
pub async fn claim(conn: &mut PgConnection, owner: Uuid, limit: i64, lease_ms: i64) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as(&format!(
        "WITH claimed AS (
            UPDATE jobs SET lease_owner = $1, lease_epoch = lease_epoch + 1, attempt = attempt + 1,
                   lease_expires_at = now() + make_interval(secs => $3::float8 / 1000)
            WHERE id IN (SELECT id FROM jobs WHERE status = 'running' AND lease_owner IS NULL
                           AND device NOT IN (SELECT name FROM devices WHERE driver = 'agent')
                         ORDER BY started_at LIMIT $2 FOR NO KEY UPDATE SKIP LOCKED)
            RETURNING *)
         SELECT claimed.*, s.mode AS session_mode, {DEVICE_COLUMNS}
         FROM claimed JOIN devices d ON d.name = claimed.device LEFT JOIN sessions s ON s.id = claimed.session_id"
    ))
    .bind(owner)
    .bind(limit)
    .bind(lease_ms)
    .fetch_all(conn)
    .await
}

/// Extend every lease this replica holds; returns the jobs whose cancellation was asked for.
pub async fn heartbeat(conn: &mut PgConnection, owner: Uuid, lease_ms: i64) -> sqlx::Result<Vec<(Uuid, bool)>> {
    sqlx::query_as(
        "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $2::float8 / 1000)
         WHERE lease_owner = $1 AND status = 'running' RETURNING id, cancel_requested",
    )
    .bind(owner)
    .bind(lease_ms)
    .fetch_all(conn)
    .await
}

/// running -> terminal, only while the caller's lease (owner + epoch) still holds: a worker that
/// lost its lease cannot complete the job (fencing). In the same statement: the result (when
/// given) and the device usage for fair share and quotas.
#[allow(clippy::too_many_arguments)]
pub async fn finish_leased(
    conn: &mut PgConnection,
    id: Uuid,
    owner: Uuid,
    epoch: i64,
    status: JobStatus,
    reason: Option<&str>,
    reason_code: Option<&str>,
    usage_seconds: f64,
    result: Option<&serde_json::Value>,
    log: Option<&str>,
) -> sqlx::Result<Option<Job>> {
    sqlx::query_as(
        "WITH done AS (
            UPDATE jobs SET status = $4, reason = $5, reason_code = $6, usage_seconds = $7,
                   finished_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL,
                   log = COALESCE($9, log)
            WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND lease_epoch = $3 RETURNING *),
         res AS (
            INSERT INTO job_results (job_id, result) SELECT id, $8 FROM done WHERE $8::jsonb IS NOT NULL
            ON CONFLICT (job_id) DO NOTHING),
         used AS (
            INSERT INTO device_usage (device, project, bucket, seconds)
            SELECT device, project, date_trunc('minute', now()), $7 FROM done WHERE $7 > 0
            ON CONFLICT (device, project, bucket) DO UPDATE SET seconds = device_usage.seconds + EXCLUDED.seconds)
         SELECT * FROM done",
    )
    .bind(id)
    .bind(owner)
    .bind(epoch)
    .bind(status.as_str())
    .bind(reason)
    .bind(reason_code)
    .bind(usage_seconds)
    .bind(result.map(Json))
    .bind(log)
    .fetch_optional(conn)
    .await
}

/// A job finished by [`finish_leased_locking`], with its device row (locked by the statement).
#[derive(Debug, Clone)]
pub struct Finished {
    pub job: Job,
    pub device: Option<Device>,
}

impl<'r> FromRow<'r, PgRow> for Finished {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        let has_device: Option<String> = row.try_get("device_name")?;
        let device = match has_device {
            Some(_) => Some(Device::from_columns(row, DEVICE_PREFIX)?),
            None => None,
        };
        Ok(Finished { job: Job::from_row(row)?, device })
    }
}

/// The first statement of a completion, in one round trip: lock the device row, record the
/// completion on the session (its lock), then [`finish_leased`] the job (result and device usage
/// in the same statement). Lock order is kept inside the statement: the device lock and the
/// session update are init plans of the job update's one-time filter (evaluated left to right,
/// device first), so they run before the job row is scanned and locked. `None` when the lease no longer holds (the caller rolls back: the session update is
/// part of its transaction).
#[allow(clippy::too_many_arguments)]
pub async fn finish_leased_locking(
    conn: &mut PgConnection,
    id: Uuid,
    device: &str,
    session: Option<Uuid>,
    owner: Uuid,
    epoch: i64,
    status: JobStatus,
    reason: Option<&str>,
    reason_code: Option<&str>,
    usage_seconds: f64,
    result: Option<&serde_json::Value>,
    log: Option<&str>,
) -> sqlx::Result<Option<Finished>> {
    sqlx::query_as(&format!(
        "WITH d AS (SELECT * FROM devices WHERE name = $9 FOR NO KEY UPDATE),
         sess AS (
            UPDATE sessions SET last_job_completed = now(), usage_seconds = usage_seconds + $7
            WHERE id = $10 AND (SELECT count(*) FROM d) >= 0 RETURNING id),
         done AS (
            UPDATE jobs SET status = $4, reason = $5, reason_code = $6, usage_seconds = $7,
                   finished_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL,
                   log = COALESCE($11, log)
            WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND lease_epoch = $3
              AND (SELECT count(*) FROM d) + (SELECT count(*) FROM sess) >= 0
            RETURNING *),
         res AS (
            INSERT INTO job_results (job_id, result) SELECT id, $8 FROM done WHERE $8::jsonb IS NOT NULL
            ON CONFLICT (job_id) DO NOTHING),
         used AS (
            INSERT INTO device_usage (device, project, bucket, seconds)
            SELECT device, project, date_trunc('minute', now()), $7 FROM done WHERE $7 > 0
            ON CONFLICT (device, project, bucket) DO UPDATE SET seconds = device_usage.seconds + EXCLUDED.seconds)
         SELECT done.*, {DEVICE_COLUMNS} FROM done LEFT JOIN d ON true"
    ))
    .bind(id)
    .bind(owner)
    .bind(epoch)
    .bind(status.as_str())
    .bind(reason)
    .bind(reason_code)
    .bind(usage_seconds)
    .bind(result.map(Json))
    .bind(device)
    .bind(session)
    .bind(log)
    .fetch_optional(conn)
    .await
}

// The statements of a batched completion ([`lock_devices`], [`lock_sessions`], [`finish_many`],
// [`candidates_many`], [`start_many`], `sessions::lock_holders`) are not kept as prepared
// statements: each is planned when it runs. A kept statement gets one generic plan (the server
// forces generic plans), made at its first run and reused while the relation's cache entry holds.
// For `= ANY($1)` over an array, the plan made when `jobs` is small is a scan of the table (EXPLAIN
// of the generic plan on a 300-row table), and a plan made while the statistics knew of few queued
// jobs was a scan of a whole index (see migration 0015); either would then run against a queue of
// 100,000 jobs. Planning once per batch costs little beside that.

/// One job's completion in [`finish_many`].
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    pub id: Uuid,
    pub epoch: i64,
    pub status: JobStatus,
    pub reason: Option<&'a str>,
    pub reason_code: Option<&'a str>,
    pub usage_seconds: f64,
    pub result: Option<&'a serde_json::Value>,
    pub log: Option<&'a str>,
}

/// Lock device rows in name order (the order every multi-device transaction takes them in).
pub async fn lock_devices(conn: &mut PgConnection, names: &[String]) -> sqlx::Result<Vec<Device>> {
    sqlx::query_as("SELECT * FROM devices WHERE name = ANY($1) ORDER BY name FOR NO KEY UPDATE")
        .persistent(false)
        .bind(names)
        .fetch_all(conn)
        .await
}

/// Lock session rows in id order.
pub async fn lock_sessions(conn: &mut PgConnection, ids: &[Uuid]) -> sqlx::Result<()> {
    sqlx::query("SELECT 1 FROM sessions WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .persistent(false)
        .bind(ids)
        .execute(conn)
        .await
        .map(|_| ())
}

/// [`finish_leased`] for many jobs of the worker `owner` in one statement: each job finishes only
/// while its own lease (owner, epoch) holds, and a job whose lease was lost is left out of the
/// answer without affecting the others. The results, the device usage and the sessions' counters
/// (`last_job_completed`, `usage_seconds`, as [`finish_leased_locking`] records them) are written
/// for the finished jobs only. The caller has locked their devices and sessions first (lock order).
pub async fn finish_many(conn: &mut PgConnection, owner: Uuid, jobs: &[Finish<'_>]) -> sqlx::Result<Vec<Job>> {
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    let epochs: Vec<i64> = jobs.iter().map(|j| j.epoch).collect();
    let statuses: Vec<&str> = jobs.iter().map(|j| j.status.as_str()).collect();
    let reasons: Vec<Option<&str>> = jobs.iter().map(|j| j.reason).collect();
    let codes: Vec<Option<&str>> = jobs.iter().map(|j| j.reason_code).collect();
    let usage: Vec<f64> = jobs.iter().map(|j| j.usage_seconds).collect();
    let results: Vec<Option<Json<&serde_json::Value>>> = jobs.iter().map(|j| j.result.map(Json)).collect();
    let logs: Vec<Option<&str>> = jobs.iter().map(|j| j.log).collect();
    sqlx::query_as(
        "WITH c AS (
            SELECT * FROM unnest($2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::float8[],
                                 $8::jsonb[], $9::text[]) AS c(id, epoch, status, reason, code, usage, result, log)),
         done AS (
            UPDATE jobs j SET status = c.status, reason = c.reason, reason_code = c.code, usage_seconds = c.usage,
                   finished_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL,
                   log = COALESCE(c.log, j.log)
            FROM c WHERE j.id = c.id AND j.status = 'running' AND j.lease_owner = $1 AND j.lease_epoch = c.epoch
            RETURNING j.*),
         res AS (
            INSERT INTO job_results (job_id, result)
            SELECT c.id, c.result FROM c JOIN done ON done.id = c.id WHERE c.result IS NOT NULL
            ON CONFLICT (job_id) DO NOTHING),
         used AS (
            INSERT INTO device_usage (device, project, bucket, seconds)
            SELECT device, project, date_trunc('minute', now()), sum(usage_seconds) FROM done
            WHERE usage_seconds > 0 GROUP BY device, project
            ON CONFLICT (device, project, bucket) DO UPDATE SET seconds = device_usage.seconds + EXCLUDED.seconds),
         sess AS (
            UPDATE sessions s SET last_job_completed = now(), usage_seconds = s.usage_seconds + t.usage
            FROM (SELECT session_id, sum(usage_seconds) AS usage FROM done WHERE session_id IS NOT NULL
                  GROUP BY session_id) t
            WHERE s.id = t.session_id)
         SELECT * FROM done",
    )
    .persistent(false)
    .bind(owner)
    .bind(&ids)
    .bind(&epochs)
    .bind(&statuses)
    .bind(&reasons)
    .bind(&codes)
    .bind(&usage)
    .bind(&results)
    .bind(&logs)
    .fetch_all(conn)
    .await
}

/// queued -> failed or canceled for every queued job of a session; returns how many.
pub async fn end_queued_in_session(
    conn: &mut PgConnection,
    session: Uuid,
    status: JobStatus,
    reason: &str,
    reason_code: &str,
) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "UPDATE jobs SET status = $2, reason = $3, reason_code = $4, finished_at = now()
         WHERE session_id = $1 AND status = 'queued'",
    )
    .bind(session)
    .bind(status.as_str())
    .bind(reason)
    .bind(reason_code)
    .execute(conn)
    .await?
    .rows_affected())
}

/// queued -> canceled for one job.
pub async fn cancel_queued(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Job>> {
    sqlx::query_as(
        "UPDATE jobs SET status = 'canceled', reason = 'canceled by the user', reason_code = 'canceled',
                finished_at = now()
         WHERE id = $1 AND status = 'queued' RETURNING *",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn request_cancel(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Job>> {
    sqlx::query_as("UPDATE jobs SET cancel_requested = true WHERE id = $1 AND status = 'running' RETURNING *")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Running jobs whose worker lease ran out (the replica died or lost the database).
pub async fn expired_leases(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<Job>> {
    sqlx::query_as(
        "SELECT * FROM jobs WHERE status = 'running' AND lease_owner IS NOT NULL AND lease_expires_at < now()
         ORDER BY lease_expires_at LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// running -> queued again (a lost worker; the next attempt starts from the queue).
pub async fn requeue_lost(conn: &mut PgConnection, id: Uuid, epoch: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE jobs SET status = 'queued', started_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
                assigned_term = NULL, cancel_requested = false
         WHERE id = $1 AND status = 'running' AND lease_epoch = $2",
    )
    .bind(id)
    .bind(epoch)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// running -> queued, handed back by its own worker (graceful shutdown): the attempt it used is
/// given back, since the job did not fail.
pub async fn hand_back(conn: &mut PgConnection, id: Uuid, owner: Uuid, epoch: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE jobs SET status = 'queued', started_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
                assigned_term = NULL, attempt = GREATEST(attempt - 1, 0)
         WHERE id = $1 AND status = 'running' AND lease_owner = $2 AND lease_epoch = $3",
    )
    .bind(id)
    .bind(owner)
    .bind(epoch)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// running -> canceled without a lease: the user asked, and the worker is gone.
pub async fn cancel_lost(conn: &mut PgConnection, id: Uuid, epoch: i64) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE jobs SET status = 'canceled', reason = 'canceled by the user', reason_code = 'canceled',
                finished_at = clock_timestamp(), lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND status = 'running' AND lease_epoch = $2",
    )
    .bind(id)
    .bind(epoch)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// The state of a session, unlocked (a snapshot for decisions whose races the schema settles).
pub async fn session_state(conn: &mut PgConnection, session: Uuid) -> sqlx::Result<Option<SessionState>> {
    let state: Option<String> =
        sqlx::query_scalar("SELECT state FROM sessions WHERE id = $1").bind(session).fetch_optional(conn).await?;
    state.map(|s| parse_text("state", &s)).transpose()
}

/// Whether cancellation of a job was asked for.
pub async fn cancel_requested(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    Ok(sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .unwrap_or(false))
}

/// running -> failed without a lease (the leader gives up on a lost job).
pub async fn fail_lost(conn: &mut PgConnection, id: Uuid, epoch: i64, reason: &str) -> sqlx::Result<bool> {
    Ok(sqlx::query(
        "UPDATE jobs SET status = 'failed', reason = $3, reason_code = 'worker_lost', finished_at = clock_timestamp(),
                lease_owner = NULL, lease_expires_at = NULL
         WHERE id = $1 AND status = 'running' AND lease_epoch = $2",
    )
    .bind(id)
    .bind(epoch)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected()
        == 1)
}

/// Dead and live rows of `job_queue` (dead: jobs that left the queue since its last VACUUM), from
/// the table statistics (updated by each backend within about a second).
pub async fn queue_rows(conn: &mut PgConnection) -> sqlx::Result<(i64, i64)> {
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT n_dead_tup, n_live_tup FROM pg_stat_user_tables WHERE relid = 'job_queue'::regclass")
            .fetch_optional(conn)
            .await?;
    Ok(row.unwrap_or((0, 0)))
}

/// `VACUUM job_queue`: removes the rows (and index entries) of jobs that left the queue, so that
/// the queue's index scans never walk them. Runs outside any transaction.
pub async fn vacuum_queue(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("VACUUM job_queue").persistent(false).execute(conn).await.map(|_| ())
}

/// Delete up to `limit` terminal jobs that finished more than `older_than_ms` ago, oldest first
/// (their results go with them); rows another transaction holds are skipped. Returns how many.
pub async fn prune_terminal(conn: &mut PgConnection, older_than_ms: i64, limit: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM jobs WHERE id IN (
            SELECT id FROM jobs
            WHERE status IN ('completed', 'failed', 'canceled')
              AND finished_at < now() - make_interval(secs => $1::float8 / 1000)
            ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(older_than_ms)
    .bind(limit)
    .execute(conn)
    .await?
    .rows_affected())
}

/// Filters of a job listing.
#[derive(Debug, Default, Clone)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub device: Option<String>,
    pub session_id: Option<Uuid>,
    pub window: Window,
}

pub async fn list(conn: &mut PgConnection, project: &str, f: &JobFilter) -> sqlx::Result<Vec<Job>> {
    let mut q = QueryBuilder::new("SELECT * FROM jobs WHERE project = ");
    q.push_bind(project);
    if let Some(v) = f.status {
        q.push(" AND status = ").push_bind(v.as_str());
    }
    if let Some(v) = &f.device {
        q.push(" AND device = ").push_bind(v);
    }
    if let Some(v) = f.session_id {
        q.push(" AND session_id = ").push_bind(v);
    }
    push_window(&mut q, &f.window);
    q.build_query_as().fetch_all(conn).await
}
