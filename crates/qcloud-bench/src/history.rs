//! The cost of history (issue 11): submit, `GET /v1/jobs/{id}` and list latencies on the empty
//! database, then again with `--history-jobs` terminal jobs loaded straight into the tables, and
//! the ratio of the two; then one pass of the server's retention pruner over
//! `--history-expired` jobs older than the retention window.
//!
//! The history is written with set-based SQL (`INSERT ... SELECT generate_series`), in
//! transactions of `--history-chunk` rows, through a direct connection to the server's database
//! (`--database-url`): several projects (the first is the admin token's, so the caller's own
//! listings walk their share of it) and devices, 85 % completed (each with a `job_results` row),
//! 10 % failed, 5 % canceled (half of them before they started), one job in ten in a closed
//! session of ten jobs, a quarter with an idempotency key, `finished_at` spread evenly over the
//! last 20 days so that the default 30-day retention keeps them, time-ordered (UUIDv7-shaped)
//! ids as the server makes them, and `seq <= 0` (older than every job the server numbers; the
//! sequence stays the server's, and bench/server/run.sh counts the server's jobs as `seq > 0`).
//! The loader's session runs with `session_replication_role = replica`: no event rows for the
//! history (the events table has its own 7-day retention) and no foreign-key checks (the rows
//! refer only to projects, devices and sessions it made). Then `VACUUM (ANALYZE)` of the three
//! tables: fresh statistics, and the visibility map and hint bits of a table that has been
//! vacuumed since, as autovacuum would leave it (the shared server runs with autovacuum off).

use crate::scenarios::{ms, noop_job, submit_all, submit_note, wait_terminal, Ctx};
use crate::stats::{Micros, Row};
use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use sqlx::{Connection, PgConnection, Row as _};
use std::future::Future;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Page size of the listings, as a user's `qcloud jobs list` asks for its recent jobs.
const LIST_LIMIT: &str = "20";
/// The history keeps `finished_at` within this many days of now.
const HISTORY_DAYS: i64 = 20;
/// Jobs the EXPLAIN ANALYZE of the pruner's statement deletes (and rolls back).
const EXPLAIN_ROWS: i64 = 5;
/// The server's pruner deletes this many jobs per batch (qcloud-scheduler `PRUNE_BATCH`).
const PRUNE_BATCH: i64 = 500;

/// Sessions of the history: jobs `g` with `g % 10 = 0` belong to session `g / 100` (ten jobs
/// each, close together in time), once `100 * s` is inside the range being loaded.
/// Parameters: $1 g_from, $2 g_to, $3 g0, $4 g1 (the kind's whole range), $5 finished_at of g0,
/// $6 finished_at of g1, $7 seq offset (unused here), $8 projects, $9 devices, $10 seed, $11
/// payload bytes (unused here).
const INSERT_SESSIONS: &str = r#"
INSERT INTO sessions (id, project, user_name, device, mode, state, closed_reason, accepting_jobs,
                      max_ttl_ms, interactive_ttl_ms, pending_ttl_ms, idle_policy, created_at, started_at,
                      activated_at, last_job_submitted, last_job_started, last_job_completed, closed_at,
                      usage_seconds)
SELECT md5($10 || ':s:' || s)::uuid,
       ($8::text[])[1 + (s % cardinality($8::text[]))::int],
       'hist-user-' || (s % 7),
       ($9::text[])[1 + ((s / cardinality($8::text[])) % cardinality($9::text[]))::int],
       CASE WHEN s % 2 = 0 THEN 'batch' ELSE 'dedicated' END, 'closed', 'completed', false,
       28800000, 60000, 86400000, 'deactivate',
       t0 - interval '2 minutes', t0 - interval '70 seconds', t0 - interval '70 seconds',
       t1 - interval '70 seconds', t1 - interval '5 seconds', t1, t1 + interval '1 minute', 30
FROM (
    SELECT s,
           $5::timestamptz + ($6::timestamptz - $5::timestamptz) * ((s * 100 - $3)::float8 / greatest($4 - $3, 1)) AS t0,
           $5::timestamptz + ($6::timestamptz - $5::timestamptz) * ((least(s * 100 + 90, $4) - $3)::float8 / greatest($4 - $3, 1)) AS t1
    FROM generate_series(($1::bigint + 99) / 100, $2::bigint / 100) AS s
    WHERE s * 100 >= $3
) x
"#;

/// The jobs of one chunk, and a result for each completed one. Parameters as above.
const INSERT_JOBS: &str = r#"
WITH ins AS (
    INSERT INTO jobs (id, seq, project, user_name, device, session_id, program, payload, shots, tags,
                      priority, status, reason, reason_code, attempt, idempotency_key, request_hash,
                      max_execution_ms, created_at, started_at, finished_at, usage_seconds, cancel_requested,
                      assigned_term, lease_epoch, claimed_at)
    SELECT (lpad(to_hex((extract(epoch FROM created) * 1000)::bigint), 12, '0')
                || '7' || substr(h, 1, 3) || '8' || substr(h, 4, 15))::uuid,
           g + $7,
           ($8::text[])[1 + (k % cardinality($8::text[]))::int],
           'hist-user-' || (k % 7),
           ($9::text[])[1 + ((k / cardinality($8::text[])) % cardinality($9::text[]))::int],
           CASE WHEN in_sess THEN md5($10 || ':s:' || s)::uuid END,
           program,
           jsonb_build_object('pubs', jsonb_build_array(jsonb_build_array(
               'OPENQASM 3.0; include "stdgates.inc"; qubit[2] q; bit[2] c; '
                   || repeat('h q[0]; cx q[0], q[1]; ', greatest($11::int / 24, 0)) || 'c = measure q;',
               NULL::text, 1024))),
           CASE WHEN program = 'sampler' THEN 1024 END,
           ARRAY['bench-history', 'exp-' || (abs(hashint8(g)) % 1000)],
           CASE WHEN r2 > 0.95 THEN 2 ELSE 1 END,
           status,
           CASE WHEN status = 'canceled' THEN 'canceled by the user'
                WHEN status = 'failed' AND r2 < 0.5 THEN 'device fault: readout calibration out of range'
                WHEN status = 'failed' THEN 'maximum execution time of 3600 s exceeded' END,
           CASE WHEN status = 'canceled' THEN 'canceled'
                WHEN status = 'failed' AND r2 < 0.5 THEN 'device_fault'
                WHEN status = 'failed' THEN 'max_execution_time' END,
           CASE WHEN started THEN 1 ELSE 0 END,
           CASE WHEN g % 4 = 0 THEN 'hist-' || $10 || '-' || g END,
           CASE WHEN g % 4 = 0 THEN sha256(convert_to($10 || g, 'UTF8')) END,
           3600000,
           created, started_at, fin,
           CASE WHEN started THEN run_s ELSE 0 END,
           status = 'canceled',
           CASE WHEN started THEN 1 END,
           CASE WHEN started THEN 1 ELSE 0 END,
           started_at
    FROM (
        SELECT y.*, md5($10 || ':' || g) AS h,
               CASE WHEN started THEN fin - make_interval(secs => run_s) END AS started_at,
               fin - make_interval(secs => CASE WHEN started THEN run_s ELSE 0 END + wait_s) AS created,
               CASE WHEN r2 < 0.75 THEN 'sampler' ELSE 'estimator' END AS program
        FROM (
            SELECT x.*, CASE WHEN in_sess THEN s ELSE g END AS k,
                   CASE WHEN r < 0.85 THEN 'completed' WHEN r < 0.95 THEN 'failed' ELSE 'canceled' END AS status,
                   (r < 0.975) AS started
            FROM (
                SELECT g, (g % 10 = 0 AND (g / 100) * 100 >= $3) AS in_sess, g / 100 AS s,
                       $5::timestamptz + ($6::timestamptz - $5::timestamptz) * ((g - $3)::float8 / greatest($4 - $3, 1)) AS fin,
                       random() AS r, random() AS r2, 0.02 + random() * 5 AS run_s, random() * 60 AS wait_s
                FROM generate_series($1::bigint, $2::bigint) AS g
            ) x
        ) y
    ) z
    RETURNING id, status, finished_at
)
INSERT INTO job_results (job_id, result, created_at)
SELECT id, jsonb_build_object(
           'counts', jsonb_build_object('00', c0, '01', 3, '10', 5, '11', 1016 - c0),
           'shots', 1024,
           'metadata', jsonb_build_object('driver', 'history', 'execution_seconds', 1.25)),
       finished_at
FROM (SELECT id, finished_at, status, 480 + (random() * 40)::int AS c0 FROM ins) r
WHERE status = 'completed'
"#;

/// One kind of history: jobs `g0..=g1`, finished evenly from `t0` (g0) to `t1` (g1).
struct Kind {
    g0: i64,
    g1: i64,
    t0: DateTime<Utc>,
    t1: DateTime<Utc>,
}

struct Loader {
    conn: PgConnection,
    seed: String,
    projects: Vec<String>,
    devices: Vec<String>,
    /// `seq = g + seq_offset <= 0` for every loaded job.
    seq_offset: i64,
    /// Padding of each job's circuit text.
    payload_bytes: i32,
}

impl Loader {
    async fn connect(
        url: &str,
        seed: String,
        projects: Vec<String>,
        devices: Vec<String>,
        total: i64,
        payload_bytes: i32,
    ) -> Result<Loader> {
        let mut conn = PgConnection::connect(url).await.with_context(|| format!("connecting to {url}"))?;
        // The loader's own statements stay out of pg_stat_statements (when it is loaded: a
        // placeholder setting otherwise), so that the profile shows the server's.
        sqlx::raw_sql("SET pg_stat_statements.track = 'none'").execute(&mut conn).await?;
        sqlx::raw_sql("SET session_replication_role = replica")
            .execute(&mut conn)
            .await
            .context("SET session_replication_role = replica (the loader needs a superuser)")?;
        Ok(Loader { conn, seed, projects, devices, seq_offset: -total, payload_bytes })
    }

    /// Load jobs `from..=to` of `kind` in transactions of `chunk` jobs, saying how it goes.
    async fn load(&mut self, what: &str, kind: &Kind, chunk: i64) -> Result<Duration> {
        let t = Instant::now();
        let mut from = kind.g0;
        while from <= kind.g1 {
            // A session is made with its first job (g = 100 s), so its later jobs, in this chunk
            // or the next, find it.
            let to = (from + chunk - 1).min(kind.g1);
            let mut tx = self.conn.begin().await?;
            for sql in [INSERT_SESSIONS, INSERT_JOBS] {
                sqlx::query(sql)
                    .bind(from)
                    .bind(to)
                    .bind(kind.g0)
                    .bind(kind.g1)
                    .bind(kind.t0)
                    .bind(kind.t1)
                    .bind(self.seq_offset)
                    .bind(&self.projects)
                    .bind(&self.devices)
                    .bind(&self.seed)
                    .bind(self.payload_bytes)
                    .execute(&mut *tx)
                    .await
                    .with_context(|| format!("loading {what} jobs {from}..={to}"))?;
            }
            tx.commit().await?;
            let done = to - kind.g0 + 1;
            let s = t.elapsed().as_secs_f64();
            eprintln!(
                "  history: {what}: {done}/{} jobs loaded in {s:.1} s ({:.0} jobs/s)",
                kind.g1 - kind.g0 + 1,
                done as f64 / s.max(1e-9)
            );
            from = to + 1;
        }
        Ok(t.elapsed())
    }
}

/// Latencies of one batch of requests.
#[derive(Default)]
struct Timed {
    lat: Micros,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Timed {
    fn note(&self) -> String {
        match &self.first_error {
            Some(e) => format!("; {} errors, first: {}", self.errors, e.chars().take(160).collect::<String>()),
            None => String::new(),
        }
    }
}

/// Run `f(0..n)` with `clients` requests in flight, timing each; none starts after `deadline`.
async fn timed<F, Fut>(n: usize, clients: usize, deadline: Instant, f: F) -> Timed
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let t0 = Instant::now();
    let results: Vec<Option<Result<f64>>> = futures::stream::iter(0..n)
        .map(|i| {
            let fut = f(i);
            async move {
                if Instant::now() >= deadline {
                    return None;
                }
                let s = Instant::now();
                Some(fut.await.map(|()| ms(s.elapsed())))
            }
        })
        .buffer_unordered(clients.max(1))
        .collect()
        .await;
    let mut out = Timed { elapsed: t0.elapsed(), ..Timed::default() };
    for r in results.into_iter().flatten() {
        match r {
            Ok(v) => out.lat.record_ms(v),
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    out
}

/// The figures of one phase.
struct Phase {
    label: String,
    submit: Timed,
    get: Timed,
    list: Timed,
    list_tag: Timed,
    /// `GET /v1/jobs/{id}` of loaded jobs of the caller's project (loaded phases only).
    get_old: Option<Timed>,
    note: String,
    /// One job this phase submitted.
    first_id: Uuid,
}

const FIGURES: [&str; 4] = [
    "POST /v1/jobs (noop, 0 ms)",
    "GET /v1/jobs/{id} (the jobs just run)",
    "GET /v1/jobs?limit=20 (recent jobs)",
    "GET /v1/jobs?tag=exp-7&limit=20",
];

impl Phase {
    fn figures(&self) -> [&Timed; 4] {
        [&self.submit, &self.get, &self.list, &self.list_tag]
    }
}

/// Submit `--history-samples` zero-work jobs over `devices`, wait until they ran, read each
/// back, and list the project's recent jobs as many times; `old` jobs are read back too.
async fn measure(ctx: &Ctx, label: &str, devices: &[String], old: &[Uuid], deadline: Instant) -> Result<Phase> {
    let a = &ctx.args;
    let clients = a.history_clients;
    let tag = ctx.tag(&format!("hist-{}", label.split_whitespace().next().unwrap_or(label)));
    let bodies: Vec<Value> = (0..a.history_samples).map(|i| noop_job(&devices[i % devices.len()], &tag, 0)).collect();
    let after = Utc::now() - chrono::Duration::seconds(2);
    let s = submit_all(&ctx.api, bodies, clients, deadline).await;
    if s.jobs.is_empty() {
        bail!("no job accepted{}", submit_note(&s));
    }
    let ids: Vec<Uuid> = s.jobs.iter().map(|j| j.id).collect();
    let (_, complete) = wait_terminal(&ctx.api, devices, &tag, after, ids.len(), deadline).await?;
    let api = &ctx.api;
    let get = timed(ids.len(), clients, deadline, |i| {
        let id = ids[i];
        async move { api.job(id).await.map(|_| ()) }
    })
    .await;
    let n = a.history_samples;
    let list =
        timed(
            n,
            clients,
            deadline,
            |_| async move { api.list_jobs(&[("limit", LIST_LIMIT.into())]).await.map(|_| ()) },
        )
        .await;
    let list_tag = timed(n / 4 + 1, clients, deadline, |_| async move {
        api.list_jobs(&[("tag", "exp-7".into()), ("limit", LIST_LIMIT.into())]).await.map(|_| ())
    })
    .await;
    let get_old = if old.is_empty() {
        None
    } else {
        Some(
            timed(old.len(), clients, deadline, |i| {
                let id = old[i];
                async move { api.job(id).await.map(|_| ()) }
            })
            .await,
        )
    };
    let mut note = submit_note(&s);
    if !complete {
        note += "; NOT ALL DONE at the time limit";
    }
    let submit = Timed { lat: s.post_latency, errors: s.errors, first_error: None, elapsed: s.elapsed };
    let phase = Phase { label: label.into(), submit, get, list, list_tag, get_old, note, first_id: ids[0] };
    for (f, t) in FIGURES.iter().zip(phase.figures()) {
        eprintln!("  history [{label}] {f}: p50 {:?} p99 {:?} ms", t.lat.pct_ms(0.5), t.lat.pct_ms(0.99));
    }
    Ok(phase)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn rows_of(p: &Phase, base: Option<&Phase>, clients: usize) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut push = |metric: &str, t: &Timed, b: Option<&Timed>, extra: &str| {
        let n = t.lat.len();
        let mut note = match b {
            Some(b) => format!(
                "/{}: p50 {}, p99 {} (target <= 1.5x)",
                base.map(|b| b.label.as_str()).unwrap_or("empty"),
                ratio(t.lat.pct_ms(0.5), b.lat.pct_ms(0.5)),
                ratio(t.lat.pct_ms(0.99), b.lat.pct_ms(0.99))
            ),
            None => String::new(),
        };
        note += extra;
        note += &t.note();
        rows.push(
            Row {
                scenario: "history".into(),
                devices: p.label.clone(),
                jobs: n,
                clients,
                wall_s: Some(t.elapsed.as_secs_f64()),
                jobs_per_s: Some(n as f64 / t.elapsed.as_secs_f64().max(1e-9)),
                metric: metric.into(),
                note,
                ..Row::default()
            }
            .latency(&t.lat),
        );
    };
    let base_figs = base.map(Phase::figures);
    for (i, (f, t)) in FIGURES.iter().zip(p.figures()).enumerate() {
        push(f, t, base_figs.map(|b| b[i]), if i == 0 { p.note.as_str() } else { "" });
    }
    if let Some(t) = &p.get_old {
        push(
            "GET /v1/jobs/{id} (random loaded jobs)",
            t,
            base_figs.map(|b| b[1]),
            " (vs the just-run jobs of the base)",
        );
    }
    rows
}

/// Statements of the server's pruner running now.
async fn pruner_active(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND state = 'active' AND query LIKE 'DELETE FROM jobs WHERE id IN%'",
    )
    .fetch_one(conn)
    .await?)
}

/// Terminal jobs finished before `cutoff`.
async fn expired_count(conn: &mut PgConnection, cutoff: DateTime<Utc>) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE status IN ('completed', 'failed', 'canceled') AND finished_at < $1",
    )
    .bind(cutoff)
    .fetch_one(conn)
    .await?)
}

pub async fn history(ctx: &Ctx, limit: Duration) -> Result<Vec<Row>> {
    let a = &ctx.args;
    let url = a.database_url.as_deref().ok_or_else(|| {
        anyhow!("the history scenario loads jobs straight into the server's database: give --database-url")
    })?;
    if a.history_retention_days <= HISTORY_DAYS as f64 {
        bail!("--history-retention-days must be more than {HISTORY_DAYS} (the history spans {HISTORY_DAYS} days)");
    }
    if a.history_samples == 0 || a.history_projects == 0 || a.history_devices == 0 {
        bail!("--history-samples, --history-projects and --history-devices must be positive");
    }
    let clients = a.history_clients.max(1);
    let live = ctx.devices("histlive", 4, "noop", 1, false).await?;

    // 1. The empty database.
    let empty = measure(ctx, "empty", &live, &[], Instant::now() + limit).await?;
    let mut rows = rows_of(&empty, None, clients);

    // 2. Load the history into the caller's project and others.
    let mut conn = PgConnection::connect(url).await.with_context(|| format!("connecting to {url}"))?;
    sqlx::raw_sql("SET pg_stat_statements.track = 'none'").execute(&mut conn).await?;
    let own: String = sqlx::query_scalar("SELECT project FROM jobs WHERE id = $1")
        .bind(empty.first_id)
        .fetch_one(&mut conn)
        .await
        .context("reading the project of the benchmark's jobs")?;
    let mut projects = vec![own.clone()];
    projects.extend((1..a.history_projects).map(|i| format!("bench-{}-hist-{i}", ctx.run)));
    sqlx::query("INSERT INTO projects (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING")
        .bind(&projects)
        .execute(&mut conn)
        .await?;
    let devices = ctx.devices("hist", a.history_devices, "noop", 1, true).await?;
    let n = a.history_jobs as i64;
    let e = a.history_expired as i64;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut conn).await?;
    let day = chrono::Duration::days(1);
    let retention = chrono::Duration::milliseconds((a.history_retention_days * 86_400_000.0) as i64);
    let payload_bytes = a.history_payload_bytes.min(1 << 20) as i32;
    let mut loader = Loader::connect(url, ctx.run.clone(), projects.clone(), devices, n + e, payload_bytes).await?;
    let chunk = (a.history_chunk.max(100) as i64 / 100) * 100;
    let mut load_note = String::new();
    if n > 0 {
        let kind = Kind {
            g0: e + 1,
            g1: e + n,
            t0: now - day * HISTORY_DAYS as i32 + chrono::Duration::minutes(1),
            t1: now - chrono::Duration::minutes(2),
        };
        let took = loader.load("load", &kind, chunk).await?;
        let t = Instant::now();
        sqlx::raw_sql("VACUUM (ANALYZE) jobs, job_results, sessions").execute(&mut conn).await?;
        let vac = t.elapsed();
        let size: String = sqlx::query_scalar(
            "SELECT pg_size_pretty(pg_total_relation_size('jobs')) || ' jobs (with indexes), '
                 || pg_size_pretty(pg_total_relation_size('job_results')) || ' job_results'",
        )
        .fetch_one(&mut conn)
        .await?;
        load_note = format!(
            "loaded {n} jobs in {:.1} s ({:.0} jobs/s), VACUUM (ANALYZE) {:.1} s; {size}",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64().max(1e-9),
            vac.as_secs_f64()
        );
        eprintln!("  history: {load_note}");
    }
    // Random loaded jobs of the caller's project, to read back.
    let share = (n as f64 / projects.len() as f64).max(1.0);
    let pct = (100.0 * 4.0 * a.history_samples as f64 / share).clamp(0.01, 100.0);
    let old: Vec<Uuid> = if n > 0 {
        sqlx::query_scalar(&format!(
            "SELECT id FROM (SELECT id FROM jobs TABLESAMPLE SYSTEM ({pct}) WHERE project = $1 AND seq <= 0) s
             ORDER BY random() LIMIT $2"
        ))
        .bind(&own)
        .bind(a.history_samples as i64)
        .fetch_all(&mut conn)
        .await?
    } else {
        Vec::new()
    };

    // 3. The loaded database.
    let label = format!("loaded {n}");
    let loaded = measure(ctx, &label, &live, &old, Instant::now() + limit).await?;
    let mut loaded_rows = rows_of(&loaded, Some(&empty), clients);
    if let Some(r) = loaded_rows.first_mut() {
        r.note = format!("{}; {load_note}", r.note);
    }
    rows.extend(loaded_rows);

    // 4. One pass of the pruner: jobs 1 to 10 days past the retention window.
    if e > 0 {
        let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut conn).await?;
        let kind = Kind { g0: 1, g1: e, t0: now - retention - day * 10, t1: now - retention - day };
        let took = loader.load("expired load", &kind, chunk).await?;
        let t_loaded = Instant::now();
        let cutoff = now - retention;
        rows.extend(prune_pass(ctx, &mut conn, &live, &empty, cutoff, e, took, t_loaded, limit).await?);
        // Leave the database as after step 2 for whatever runs next: stop the pruner's batch in
        // flight (it logs a warning and tries again in 10 s) and delete what it has not reached,
        // without foreign-key actions (nothing refers to these jobs but their results, which go
        // first).
        let mut left = expired_count(&mut conn, cutoff).await?;
        let gone_by_hand = left;
        sqlx::raw_sql("SET session_replication_role = replica").execute(&mut conn).await?;
        for _ in 0..5 {
            if left == 0 {
                break;
            }
            sqlx::query(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = current_database()
                   AND pid <> pg_backend_pid() AND state = 'active' AND query LIKE 'DELETE FROM jobs WHERE id IN%'",
            )
            .execute(&mut conn)
            .await?;
            let old = "SELECT id FROM jobs WHERE status IN ('completed', 'failed', 'canceled') AND finished_at < $1 \
                       FOR UPDATE SKIP LOCKED";
            let mut tx = conn.begin().await?;
            let ids: Vec<Uuid> = sqlx::query_scalar(old).bind(cutoff).fetch_all(&mut *tx).await?;
            sqlx::query("DELETE FROM job_results WHERE job_id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM jobs WHERE id = ANY($1)").bind(&ids).execute(&mut *tx).await?;
            tx.commit().await?;
            left = expired_count(&mut conn, cutoff).await?;
        }
        if gone_by_hand > 0 {
            eprintln!(
                "  history: deleted {} of the {gone_by_hand} expired jobs the pruner had not reached",
                gone_by_hand - left
            );
        }
    }
    Ok(rows)
}

/// Time the server's pruner over `expired` jobs older than `cutoff`: the plan of its statement
/// (EXPLAIN ANALYZE of a small batch, rolled back), the latencies while it runs, and how fast the
/// jobs go.
#[allow(clippy::too_many_arguments)]
async fn prune_pass(
    ctx: &Ctx,
    conn: &mut PgConnection,
    live: &[String],
    empty: &Phase,
    cutoff: DateTime<Utc>,
    expired: i64,
    load_time: Duration,
    t_loaded: Instant,
    limit: Duration,
) -> Result<Vec<Row>> {
    let a = &ctx.args;
    // The pruner's statement (qcloud-store jobs::prune_terminal), with foreign-key actions on.
    sqlx::raw_sql("SET session_replication_role = origin").execute(&mut *conn).await?;
    let retention_ms = (a.history_retention_days * 86_400_000.0) as i64;
    let explain = format!(
        "EXPLAIN (ANALYZE, BUFFERS) DELETE FROM jobs WHERE id IN (
            SELECT id FROM jobs
            WHERE status IN ('completed', 'failed', 'canceled')
              AND finished_at < now() - make_interval(secs => {retention_ms}::float8 / 1000)
            ORDER BY finished_at LIMIT {EXPLAIN_ROWS} FOR UPDATE SKIP LOCKED)"
    );
    let mut tx = conn.begin().await?;
    let plan: Vec<String> = sqlx::query(&explain)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<Result<_, _>>()?;
    tx.rollback().await?;
    eprintln!("  history: the pruner's DELETE of {EXPLAIN_ROWS} jobs (EXPLAIN ANALYZE, rolled back):");
    for l in &plan {
        eprintln!("    {l}");
    }
    let exec_ms: Option<f64> =
        plan.iter().find_map(|l| l.trim().strip_prefix("Execution Time: ")?.strip_suffix(" ms")?.parse().ok());
    let triggers: Vec<String> = plan
        .iter()
        .filter(|l| l.trim_start().starts_with("Trigger "))
        .map(|l| l.trim().replace("Trigger for constraint ", ""))
        .collect();
    let mut explain_note = match exec_ms {
        Some(t) => format!(
            "EXPLAIN ANALYZE of {EXPLAIN_ROWS} deletions: {t:.1} ms ({:.2} ms per job, a batch of {PRUNE_BATCH} ~ {:.0} ms)",
            t / EXPLAIN_ROWS as f64,
            t / EXPLAIN_ROWS as f64 * PRUNE_BATCH as f64
        ),
        None => "EXPLAIN ANALYZE gave no execution time".into(),
    };
    if !triggers.is_empty() {
        explain_note += &format!("; {}", triggers.join("; "));
    }

    // The pruner looks every 10 s when it has no backlog: give it that to start (a batch's
    // deletions show when it commits), then measure while it works, then watch it go on.
    let mut first_gone: Option<Instant> = None;
    let start_by = Instant::now() + Duration::from_secs(15);
    while Instant::now() < start_by && first_gone.is_none() && pruner_active(conn).await? == 0 {
        if expired_count(conn, cutoff).await? < expired {
            first_gone = Some(Instant::now());
        } else {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let active_before = pruner_active(conn).await?;
    let during = measure(ctx, "pruning", live, &[], Instant::now() + limit).await?;
    let active_after = pruner_active(conn).await?;
    let watch_until = Instant::now() + limit;
    let mut left = expired_count(conn, cutoff).await?;
    while left > 0 && Instant::now() < watch_until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = expired_count(conn, cutoff).await?;
        if first_gone.is_none() && left < expired {
            first_gone = Some(Instant::now());
        }
    }
    let t_end = Instant::now();
    let deleted = expired - left;
    let mut rows = rows_of(&during, Some(empty), a.history_clients.max(1));
    if let Some(r) = rows.first_mut() {
        r.note +=
            &format!("; pruner DELETE running at the start / end of these requests: {active_before} / {active_after}");
    }
    let span = first_gone.map(|f| (t_end - f).as_secs_f64());
    let note = format!(
        "{expired} jobs 1-10 days past a {} d retention loaded in {:.1} s; first deletion {} after the load; \
         deleted {deleted} in {} ({}){}; {explain_note}",
        a.history_retention_days,
        load_time.as_secs_f64(),
        first_gone.map(|f| format!("{:.1} s", (f - t_loaded).as_secs_f64())).unwrap_or("never".into()),
        span.map(|s| format!("{s:.1} s")).unwrap_or("-".into()),
        match span {
            Some(s) if s > 0.0 && deleted > 0 => format!("{:.0} jobs/s", deleted as f64 / s),
            _ => "no rate".into(),
        },
        if left > 0 { format!("; {left} LEFT at the time limit") } else { String::new() },
    );
    rows.push(Row {
        scenario: "history".into(),
        devices: "pruner".into(),
        jobs: deleted as u64,
        clients: 0,
        wall_s: span,
        jobs_per_s: span.filter(|s| *s > 0.0).map(|s| deleted as f64 / s),
        metric: format!("retention pruner, batches of {PRUNE_BATCH}"),
        note,
        ..Row::default()
    });
    Ok(rows)
}
