//! The scheduler leader's lease: one row with a holder, a term and an expiry. Acquiring bumps the
//! term; every leader write checks that its term still holds (fencing).

use sqlx::PgConnection;
use uuid::Uuid;

/// Try to become (or stay) leader for `ttl_ms`. Returns the term held, if any.
pub async fn acquire_or_renew(
    conn: &mut PgConnection,
    me: Uuid,
    current_term: Option<i64>,
    ttl_ms: i64,
) -> sqlx::Result<Option<i64>> {
    if let Some(term) = current_term {
        let renewed: Option<i64> = sqlx::query_scalar(
            "UPDATE leader_lease SET expires_at = now() + make_interval(secs => $3::float8 / 1000)
             WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > now() RETURNING term",
        )
        .bind(me)
        .bind(term)
        .bind(ttl_ms)
        .fetch_optional(&mut *conn)
        .await?;
        if renewed.is_some() {
            return Ok(renewed);
        }
    }
    sqlx::query_scalar(
        "UPDATE leader_lease SET holder = $1, term = term + 1,
                expires_at = now() + make_interval(secs => $2::float8 / 1000)
         WHERE id = 1 AND (expires_at <= now() OR holder IS NULL) RETURNING term",
    )
    .bind(me)
    .bind(ttl_ms)
    .fetch_optional(conn)
    .await
}

/// Give the lease up (graceful shutdown), so another replica takes over at once.
pub async fn release(conn: &mut PgConnection, me: Uuid, term: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE leader_lease SET expires_at = '-infinity' WHERE id = 1 AND holder = $1 AND term = $2")
        .bind(me)
        .bind(term)
        .execute(conn)
        .await?;
    Ok(())
}

/// Fencing check inside a leader transaction: locks the lease row in share mode so that no new
/// term can be taken until this transaction ends, and tells whether `term` still holds.
pub async fn holds(conn: &mut PgConnection, me: Uuid, term: i64) -> sqlx::Result<bool> {
    let row: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM leader_lease WHERE id = 1 AND holder = $1 AND term = $2 AND expires_at > now() FOR SHARE",
    )
    .bind(me)
    .bind(term)
    .fetch_optional(conn)
    .await?;
    Ok(row.is_some())
}
