//! The sequencer gives event ids in commit order: an event whose transaction commits late gets a
//! later id than one that committed first, although it was inserted first; so a reader that saw
//! up to id N never misses an event below N. Against a real Postgres, with two open transactions.

use qcloud_store::events::{self, EventFilter};
use sqlx::PgPool;

async fn insert(conn: &mut sqlx::PgConnection, project: &str, kind: &str) {
    sqlx::query("INSERT INTO events (project, type, device, status, data) VALUES ($1, $2, 'd', 'queued', '{}'::jsonb)")
        .bind(project)
        .bind(kind)
        .execute(conn)
        .await
        .unwrap();
}

async fn sequence(pool: &PgPool) -> events::Sequenced {
    let mut tx = pool.begin().await.unwrap();
    let s = events::sequence(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
    s
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn ids_follow_commit_order_not_insert_order(pool: PgPool) {
    let mut early = pool.begin().await.unwrap();
    insert(&mut early, "p", "job.queued").await; // inserted first, committed last
    let mut late = pool.begin().await.unwrap();
    insert(&mut late, "p", "job.running").await;
    late.commit().await.unwrap();
    let s = sequence(&pool).await;
    assert_eq!((s.events, s.last_seq), (1, 1), "only the committed event is numbered");
    let f = EventFilter { project: "p".into(), ..EventFilter::default() };
    let mut c = pool.acquire().await.unwrap();
    let seen = events::after(&mut c, &f, 0, 100).await.unwrap();
    assert_eq!(seen.iter().map(|e| (e.seq, e.kind.as_str())).collect::<Vec<_>>(), [(1, "job.running")]);
    early.commit().await.unwrap();
    let s = sequence(&pool).await;
    assert_eq!((s.events, s.last_seq), (1, 2));
    // A reader that saw up to 1 gets the late one next, and nothing twice.
    let next = events::after(&mut c, &f, 1, 100).await.unwrap();
    assert_eq!(next.iter().map(|e| (e.seq, e.kind.as_str())).collect::<Vec<_>>(), [(2, "job.queued")]);
    // Another project's events are not in this project's reads.
    insert(&mut c, "q", "job.queued").await;
    sequence(&pool).await;
    assert!(events::after(&mut c, &f, 2, 100).await.unwrap().is_empty());
    // A rolled-back event never gets an id.
    let mut gone = pool.begin().await.unwrap();
    insert(&mut gone, "p", "job.failed").await;
    gone.rollback().await.unwrap();
    assert_eq!(sequence(&pool).await.events, 0);
}

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn a_second_pass_while_one_runs_skips_instead_of_waiting(pool: PgPool) {
    let mut c = pool.acquire().await.unwrap();
    insert(&mut c, "p", "job.queued").await;
    let mut first = pool.begin().await.unwrap();
    let s = events::sequence(&mut first).await.unwrap();
    assert_eq!(s.events, 1);
    let busy = sequence(&pool).await;
    assert!(busy.busy && busy.events == 0, "{busy:?}");
    first.commit().await.unwrap();
    assert_eq!(events::last_seq(&mut c).await.unwrap(), 1);
}
