//! The faster paths of issue 11 against real Postgres: bulk submit (one statement, all or
//! nothing, dispatched like single jobs), the one-statement submit and completion (wake-ups and
//! fencing kept), and retention (old terminal jobs pruned, nothing else).

use qcloud_service::devices::AddDevice;
use qcloud_service::jobs::SubmitJob;
use qcloud_service::pipeline::{ClaimedJob, Fence, Lease, Outcome};
use qcloud_service::sessions::OpenSession;
use qcloud_service::{DriverKind, Principal, Service, ServiceConfig, ServiceError, SessionMode};
use qcloud_store::PgPool;
use serde_json::json;
use uuid::Uuid;

struct Env {
    svc: Service,
    me: Uuid,
    term: i64,
    alice: Principal,
}

async fn env(pool: PgPool, cfg: ServiceConfig) -> Env {
    let svc = Service::new(pool, cfg);
    let me = Uuid::now_v7();
    let term = svc.acquire_leadership(me, None, 600_000).await.unwrap().expect("first leader");
    let a = svc.create_token("proj-a", "alice", false).await.unwrap();
    let alice = svc.authenticate(&a).await.unwrap();
    for d in ["dev_a", "dev_b"] {
        svc.add_device(AddDevice::new(d, DriverKind::Noop, 5)).await.unwrap();
    }
    Env { svc, me, term, alice }
}

fn noop(device: &str, i: usize) -> SubmitJob {
    SubmitJob { tags: vec![format!("t{i}")], ..SubmitJob::to_device(device, "noop", json!({ "i": i })) }
}

impl Env {
    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(self.svc.pool()).await.unwrap()
    }

    async fn status(&self, id: Uuid) -> String {
        sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1").bind(id).fetch_one(self.svc.pool()).await.unwrap()
    }

    /// Run every job of `device` to the end through the completion chain; returns their ids in
    /// the order they ran.
    async fn run_device(&self, device: &str) -> Vec<Uuid> {
        self.svc.dispatch_device(device, Fence::Leader { me: self.me, term: self.term }).await.unwrap();
        let worker = Uuid::now_v7();
        let mut next: Option<ClaimedJob> = self.svc.claim_jobs(worker, 32).await.unwrap().into_iter().next();
        let mut ran = Vec::new();
        while let Some(job) = next.take() {
            ran.push(job.id);
            let c = self.svc.complete_job(&job, Outcome::Completed { result: json!({}) }, 0.0, true).await.unwrap();
            next = c.next.map(|b| *b);
        }
        ran
    }
}

/// Listen on the wake-up channel with a connection of our own.
async fn listener(pool: &PgPool) -> sqlx::postgres::PgListener {
    let mut l = sqlx::postgres::PgListener::connect_with(pool).await.unwrap();
    l.listen(qcloud_store::channel::WAKE).await.unwrap();
    l
}

async fn next_wake(l: &mut sqlx::postgres::PgListener) -> Option<String> {
    match tokio::time::timeout(std::time::Duration::from_secs(5), l.recv()).await {
        Ok(Ok(n)) => Some(n.payload().to_string()),
        _ => None,
    }
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn bulk_jobs_are_stored_whole_woken_and_run_in_order(pool: PgPool) {
    let e = env(pool.clone(), ServiceConfig::default()).await;
    let mut wake = listener(&pool).await;
    let reqs: Vec<SubmitJob> = (0..20).map(|i| noop(if i < 10 { "dev_a" } else { "dev_b" }, i)).collect();
    let views = e.svc.submit_jobs(&e.alice, reqs).await.unwrap();
    assert_eq!(views.len(), 20);
    assert!(views.iter().enumerate().all(|(i, v)| v.tags == vec![format!("t{i}")]));
    // Both idle devices were woken, once each, by the insert's own statement.
    let mut woke = vec![next_wake(&mut wake).await, next_wake(&mut wake).await];
    woke.sort();
    assert_eq!(woke, vec![Some("dev_a".to_string()), Some("dev_b".to_string())]);
    // They run in the order given (first come, first served).
    let ran = e.run_device("dev_a").await;
    assert_eq!(ran, views[..10].iter().map(|v| v.id).collect::<Vec<_>>());
    for v in &views[..10] {
        assert_eq!(e.status(v.id).await, "completed");
    }
    assert_eq!(e.count("SELECT count(*) FROM jobs WHERE status = 'queued'").await, 10);
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn a_refused_bulk_job_stores_nothing_and_names_its_index(pool: PgPool) {
    let e = env(pool, ServiceConfig::default()).await;
    let mut reqs: Vec<SubmitJob> = (0..5).map(|i| noop("dev_a", i)).collect();
    reqs[3].device = Some("missing".into());
    match e.svc.submit_jobs(&e.alice, reqs).await {
        Err(ServiceError::AtIndex { index: 3, source }) => {
            assert!(matches!(*source, ServiceError::NotFound { what: "device", .. }), "{source:?}")
        }
        other => panic!("expected an error at index 3, got {other:?}"),
    }
    assert_eq!(e.count("SELECT count(*) FROM jobs").await, 0);
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn single_submit_in_one_statement_wakes_only_an_idle_device(pool: PgPool) {
    let e = env(pool.clone(), ServiceConfig::default()).await;
    let mut wake = listener(&pool).await;
    let first = e.svc.submit_job(&e.alice, noop("dev_a", 0)).await.unwrap().0;
    assert_eq!(next_wake(&mut wake).await.as_deref(), Some("dev_a"));
    e.svc.dispatch_device("dev_a", Fence::Leader { me: e.me, term: e.term }).await.unwrap();
    assert_eq!(e.status(first.id).await, "running");
    // A busy device gets no wake-up: its completion starts the next job.
    e.svc.submit_job(&e.alice, noop("dev_a", 1)).await.unwrap();
    e.svc.submit_job(&e.alice, noop("dev_b", 2)).await.unwrap();
    assert_eq!(next_wake(&mut wake).await.as_deref(), Some("dev_b"));
    // Idempotency keys still answer with the first job.
    let keyed = |i| SubmitJob { idempotency_key: Some("k1".into()), ..noop("dev_b", i) };
    let (a, created_a) = e.svc.submit_job(&e.alice, keyed(3)).await.unwrap();
    let (b, created_b) = e.svc.submit_job(&e.alice, keyed(3)).await.unwrap();
    assert_eq!((a.id, created_a, created_b), (b.id, true, false));
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn a_completion_with_a_lost_lease_records_nothing_on_the_session(pool: PgPool) {
    let e = env(pool, ServiceConfig::default()).await;
    let sid = e.svc.open_session(&e.alice, OpenSession::new("dev_a", SessionMode::Dedicated)).await.unwrap().id;
    for i in 0..2 {
        e.svc
            .submit_job(&e.alice, SubmitJob { session_id: Some(sid), device: None, ..noop("dev_a", i) })
            .await
            .unwrap();
    }
    e.svc.dispatch_device("dev_a", Fence::Leader { me: e.me, term: e.term }).await.unwrap();
    let job = e.svc.claim_jobs(Uuid::now_v7(), 32).await.unwrap().pop().expect("claimed");
    let stale = ClaimedJob { lease: Lease { epoch: job.lease.epoch + 1, ..job.lease }, ..job.clone() };
    let lost = e.svc.complete_job(&stale, Outcome::Completed { result: json!({}) }, 5.0, true).await;
    assert!(matches!(lost, Err(ServiceError::LeaseLost)), "{lost:?}");
    let usage: f64 = sqlx::query_scalar("SELECT usage_seconds FROM sessions WHERE id = $1")
        .bind(sid)
        .fetch_one(e.svc.pool())
        .await
        .unwrap();
    assert_eq!(usage, 0.0, "the session update rolled back with the lost completion");
    assert_eq!(e.status(job.id).await, "running");
    // The real lease completes, records usage and chains the session's next job.
    let done = e.svc.complete_job(&job, Outcome::Completed { result: json!({}) }, 5.0, true).await.unwrap();
    let next = done.next.expect("the session's next job starts at once");
    assert_eq!(next.session_id, Some(sid));
    let usage: f64 = sqlx::query_scalar("SELECT usage_seconds FROM sessions WHERE id = $1")
        .bind(sid)
        .fetch_one(e.svc.pool())
        .await
        .unwrap();
    assert_eq!(usage, 5.0);
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn retention_prunes_old_terminal_jobs_only(pool: PgPool) {
    let cfg = ServiceConfig { job_retention: Some(chrono::Duration::hours(1)), ..ServiceConfig::default() };
    let e = env(pool, cfg).await;
    let views = e.svc.submit_jobs(&e.alice, (0..6).map(|i| noop("dev_a", i)).collect()).await.unwrap();
    let ran = e.run_device("dev_a").await;
    assert_eq!(ran.len(), 6);
    // A job still queued, and a retry whose parent will be pruned.
    let queued = e.svc.submit_job(&e.alice, noop("dev_b", 9)).await.unwrap().0.id;
    let child = e.svc.submit_job(&e.alice, noop("dev_b", 10)).await.unwrap().0.id;
    sqlx::query("UPDATE jobs SET parent_id = $1 WHERE id = $2")
        .bind(views[0].id)
        .bind(child)
        .execute(e.svc.pool())
        .await
        .unwrap();
    // Four of the six finished two hours ago (queued jobs are old too: they are never pruned).
    let old: Vec<Uuid> = views[..4].iter().map(|v| v.id).collect();
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE id = ANY($1)")
        .bind(&old)
        .execute(e.svc.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET created_at = now() - interval '3 hours' WHERE id = $1")
        .bind(queued)
        .execute(e.svc.pool())
        .await
        .unwrap();
    assert_eq!(e.count("SELECT count(*) FROM job_results").await, 6);
    // Small batches: 3, then 1, then nothing left.
    assert_eq!(e.svc.prune_jobs(3).await.unwrap(), 3);
    assert_eq!(e.svc.prune_jobs(3).await.unwrap(), 1);
    assert_eq!(e.svc.prune_jobs(3).await.unwrap(), 0);
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM jobs ORDER BY seq").fetch_all(e.svc.pool()).await.unwrap();
    let mut want: Vec<Uuid> = views[4..].iter().map(|v| v.id).collect();
    want.extend([queued, child]);
    assert_eq!(left, want);
    assert_eq!(e.count("SELECT count(*) FROM job_results").await, 2, "results go with their jobs");
    let parent: Option<Uuid> = sqlx::query_scalar("SELECT parent_id FROM jobs WHERE id = $1")
        .bind(child)
        .fetch_one(e.svc.pool())
        .await
        .unwrap();
    assert_eq!(parent, None, "a pruned parent's child keeps its row");
    // Retention off prunes nothing.
    let off = Service::new(e.svc.pool().clone(), ServiceConfig { job_retention: None, ..ServiceConfig::default() });
    sqlx::query("UPDATE jobs SET finished_at = now() - interval '2 hours' WHERE status = 'completed'")
        .execute(e.svc.pool())
        .await
        .unwrap();
    assert_eq!(off.prune_jobs(100).await.unwrap(), 0);
}

impl Env {
    /// `job_queue` holds exactly the queued jobs, with their queue columns.
    async fn assert_queue_mirrors_jobs(&self, when: &str) {
        let diff = self
            .count(
                "SELECT count(*) FROM (
                    (SELECT job_id, device, project, session_id, priority, seq FROM job_queue
                     EXCEPT SELECT id, device, project, session_id, priority, seq FROM jobs WHERE status = 'queued')
                    UNION ALL
                    (SELECT id, device, project, session_id, priority, seq FROM jobs WHERE status = 'queued'
                     EXCEPT SELECT job_id, device, project, session_id, priority, seq FROM job_queue)) d",
            )
            .await;
        assert_eq!(diff, 0, "job_queue differs from the queued jobs {when}");
        let (q, j) = (
            self.count("SELECT count(*) FROM job_queue").await,
            self.count("SELECT count(*) FROM jobs WHERE status = 'queued'").await,
        );
        assert_eq!(q, j, "queue rows vs queued jobs {when}");
    }
}

/// The queue table (migration 0012) follows every way a job enters or leaves the queue: bulk and
/// single submits, session jobs, cancel, a session's cancel, starts and completions, a lost
/// worker's requeue, retention; and the leader's VACUUM of it clears the rows jobs left behind.
#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn the_queue_table_mirrors_the_queued_jobs_through_every_transition(pool: PgPool) {
    let cfg = ServiceConfig { lease: chrono::Duration::milliseconds(1), ..ServiceConfig::default() };
    let e = env(pool, cfg).await;
    let bulk = e.svc.submit_jobs(&e.alice, (0..600).map(|i| noop("dev_a", i)).collect()).await.unwrap();
    let single = e.svc.submit_job(&e.alice, noop("dev_b", 1000)).await.unwrap().0.id;
    let sid = e.svc.open_session(&e.alice, OpenSession::new("dev_b", SessionMode::Batch)).await.unwrap().id;
    for i in 0..3 {
        e.svc
            .submit_job(&e.alice, SubmitJob { session_id: Some(sid), device: None, ..noop("dev_b", 2000 + i) })
            .await
            .unwrap();
    }
    e.assert_queue_mirrors_jobs("after submits").await;
    assert_eq!(e.count("SELECT count(*) FROM job_queue").await, 604);

    e.svc.cancel_job(&e.alice, qcloud_service::jobs::CancelJob { id: bulk[599].id }).await.unwrap();
    e.assert_queue_mirrors_jobs("after a cancel").await;
    e.svc.cancel_session(&e.alice, qcloud_service::sessions::CancelSession { id: sid }).await.unwrap();
    e.assert_queue_mirrors_jobs("after a session's cancel").await;

    // A worker claims dev_b's job and is lost (its 1 ms lease runs out): the job is queued again.
    e.svc.dispatch_device("dev_b", Fence::Leader { me: e.me, term: e.term }).await.unwrap();
    let lost = e.svc.claim_jobs(Uuid::now_v7(), 32).await.unwrap();
    assert_eq!(lost.iter().map(|j| j.id).collect::<Vec<_>>(), vec![single]);
    e.assert_queue_mirrors_jobs("while dev_b's job runs").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(e.svc.recover_lost_jobs(e.me, e.term).await.unwrap(), 1);
    assert_eq!(e.status(single).await, "queued");
    e.assert_queue_mirrors_jobs("after a lost worker's job was requeued").await;

    // Running the queue to the end leaves it empty; the VACUUM removes what the starts left.
    assert_eq!(e.run_device("dev_a").await.len(), 599);
    assert_eq!(e.run_device("dev_b").await, vec![single]);
    e.assert_queue_mirrors_jobs("after every job ran").await;
    assert_eq!(e.count("SELECT count(*) FROM job_queue").await, 0);
    // The statistics the vacuum task reads arrive within a second or so.
    let t0 = std::time::Instant::now();
    while !e.svc.vacuum_queue_if_needed().await.unwrap() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(10),
            "the dead queue rows never showed in the statistics"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let dead: i64 = e.count("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'job_queue'").await;
    assert!(dead < qcloud_service::retention::QUEUE_VACUUM_MIN_DEAD, "{dead} dead rows after the VACUUM");
    assert!(!e.svc.vacuum_queue_if_needed().await.unwrap(), "nothing left to vacuum");
}
