//! Token caches of two services (two replicas) on one database: a revocation through one is
//! refused by the other although it had the token cached.

use qcloud_service::{Service, ServiceConfig};
use qcloud_store::PgPool;

#[sqlx::test(migrator = "qcloud_store::MIGRATOR")]
async fn a_revocation_reaches_the_other_replicas_cache(pool: PgPool) {
    let other_pool = PgPool::connect_with(pool.connect_options().as_ref().clone()).await.unwrap();
    let (a, b) = (Service::new(pool, ServiceConfig::default()), Service::new(other_pool, ServiceConfig::default()));
    let (wa, wb) = (a.start_token_watch().await.unwrap(), b.start_token_watch().await.unwrap());
    assert!(a.token_cache_is_live() && b.token_cache_is_live());
    let token = a.create_token("lab", "alice", false).await.unwrap();
    b.authenticate(&token).await.unwrap();
    let id = a.list_tokens().await.unwrap()[0].id;
    // b has it cached (30 s); the revocation through a must reach it before a answers.
    a.revoke_token(id).await.unwrap();
    let e = b.authenticate(&token).await.unwrap_err();
    assert!(matches!(e, qcloud_service::ServiceError::Unauthenticated(_)), "{e}");
    assert!(a.authenticate(&token).await.is_err());
    wa.abort();
    wb.abort();
}
