//! The bulk insert (`jobs::insert_bulk`, issue 11) against a real Postgres: the jobs are stored
//! in the order given with their queue rows, and each gets the same `job.queued` event a single
//! insert gives (one statement-level trigger writes them, 0013); deleting a queued job takes it off
//! the queue (a statement-level trigger since the queue's foreign key went, 0014).

use chrono::Duration;
use qcloud_core::Priority;
use qcloud_store::jobs::{self, BulkJob, NewJob};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

async fn setup(pool: &PgPool) {
    sqlx::query("INSERT INTO projects (name) VALUES ('p')").execute(pool).await.unwrap();
    for d in ["d1", "d2"] {
        sqlx::query("INSERT INTO devices (name, kind, driver, num_qubits) VALUES ($1, 'gate', 'noop', 4)")
            .bind(d)
            .execute(pool)
            .await
            .unwrap();
    }
}

/// The event rows of the project in insertion (`id`) order: (job id, type, data).
async fn events(pool: &PgPool) -> Vec<(Uuid, String, Value)> {
    sqlx::query_as::<_, (Uuid, String, sqlx::types::Json<Value>)>(
        "SELECT job_id, type, data FROM events WHERE project = 'p' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, t, d)| (id, t, d.0))
    .collect()
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn a_bulk_insert_stores_its_jobs_in_order_with_their_events_and_queue_rows(pool: PgPool) {
    setup(&pool).await;
    let mut c = pool.acquire().await.unwrap();
    // One job the single-row way first: its event is the reference for the bulk jobs' events.
    let single = Uuid::now_v7();
    let payload = json!({"duration_ms": 0});
    let tags = vec!["a".to_owned()];
    jobs::insert(
        &mut c,
        NewJob {
            id: single,
            project: "p",
            user: "u",
            device: "d1",
            session_id: None,
            program: "noop",
            payload: &payload,
            shots: None,
            tags: &tags,
            priority: Priority::Medium,
            idempotency_key: None,
            request_hash: None,
            max_execution: Duration::seconds(60),
        },
    )
    .await
    .unwrap()
    .expect("inserted");

    let payloads: Vec<Value> = (0..5).map(|i| json!({"i": i})).collect();
    let tag_sets: Vec<Vec<String>> = (0..5).map(|i| (0..i).map(|t| format!("t{t}")).collect()).collect();
    let bulk: Vec<BulkJob<'_>> = (0..5)
        .map(|i| BulkJob {
            id: Uuid::now_v7(),
            device: if i % 2 == 0 { "d1" } else { "d2" },
            program: "noop",
            payload: &payloads[i],
            shots: (i == 3).then_some(100),
            tags: &tag_sets[i],
            priority: if i == 4 { Priority::High } else { Priority::Medium },
            max_execution: Duration::milliseconds(1500),
        })
        .collect();
    let stored = jobs::insert_bulk(&mut c, "p", "u", &bulk).await.unwrap();
    assert_eq!(stored.count, 5);
    let given: Vec<Uuid> = bulk.iter().map(|j| j.id).collect();

    // Stored in the order given (seq follows it), with what was given and the defaults.
    let rows: Vec<jobs::Job> =
        sqlx::query_as("SELECT * FROM jobs WHERE id <> $1 ORDER BY seq").bind(single).fetch_all(&pool).await.unwrap();
    assert_eq!(rows.iter().map(|j| j.id).collect::<Vec<_>>(), given);
    for (j, b) in rows.iter().zip(&bulk) {
        assert_eq!((j.device.as_str(), j.program.as_str(), &j.payload), (b.device, b.program, b.payload));
        assert_eq!((&j.tags, j.shots, j.priority), (&b.tags.to_vec(), b.shots, b.priority));
        assert_eq!((j.max_execution, j.user_name.as_str()), (Duration::milliseconds(1500), "u"));
        assert_eq!(j.status, qcloud_core::JobStatus::Queued);
        assert_eq!(Some(j.created_at), stored.created_at, "created_at is the one returned");
    }
    // Every job is on the queue.
    let queued: Vec<Uuid> = sqlx::query_scalar("SELECT job_id FROM job_queue WHERE job_id <> $1 ORDER BY seq")
        .bind(single)
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(queued, given);

    // One `job.queued` event per job, in insertion order, shaped like the single insert's.
    let ev = events(&pool).await;
    assert_eq!(ev.iter().map(|e| e.0).collect::<Vec<_>>(), [vec![single], given.clone()].concat());
    assert!(ev.iter().all(|e| e.1 == "job.queued"), "{ev:?}");
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let reference = &ev[0].2;
    for ((_, _, data), j) in ev[1..].iter().zip(&rows) {
        assert_eq!(keys(data), keys(reference), "{data}");
        assert_eq!(data["job_id"], json!(j.id));
        assert_eq!(data["device"], json!(j.device));
        assert_eq!((&data["program"], &data["status"]), (&json!("noop"), &json!("queued")));
        assert_eq!((&data["attempt"], &data["usage_seconds"]), (&json!(0), &json!(0)));
        for k in ["session_id", "previous_status", "reason", "reason_code", "started_at", "finished_at"] {
            assert_eq!(data[k], Value::Null, "{k}: {data}");
        }
        assert_eq!(data["session_last_job_completed"], Value::Null);
        let created: chrono::DateTime<chrono::Utc> = serde_json::from_value(data["created_at"].clone()).unwrap();
        assert_eq!(created, j.created_at);
    }
    for k in keys(reference) {
        if !["job_id", "device", "created_at"].contains(&k.as_str()) {
            assert_eq!(ev[1].2[&k], reference[&k], "{k}: the bulk job's event says what the single job's says");
        }
    }
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn deleting_a_queued_job_takes_it_off_the_queue(pool: PgPool) {
    setup(&pool).await;
    let mut c = pool.acquire().await.unwrap();
    let payload = json!({});
    let bulk: Vec<BulkJob<'_>> = (0..3)
        .map(|_| BulkJob {
            id: Uuid::now_v7(),
            device: "d1",
            program: "noop",
            payload: &payload,
            shots: None,
            tags: &[],
            priority: Priority::Medium,
            max_execution: Duration::seconds(1),
        })
        .collect();
    jobs::insert_bulk(&mut c, "p", "u", &bulk).await.unwrap();
    // A finished job (not on the queue) and a queued one, deleted in one statement.
    sqlx::query("UPDATE jobs SET status = 'canceled', finished_at = now() WHERE id = $1")
        .bind(bulk[0].id)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM jobs WHERE id = ANY($1)").bind(vec![bulk[0].id, bulk[1].id]).execute(&pool).await.unwrap();
    let queued: Vec<Uuid> = sqlx::query_scalar("SELECT job_id FROM job_queue").fetch_all(&pool).await.unwrap();
    assert_eq!(queued, [bulk[2].id]);
}
