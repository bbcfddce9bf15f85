//! Users with passwords (the OAuth password grant of the Pasqal facade): argon2id hashes, and a
//! login that answers with a fresh bearer token of the user's project.

use crate::error::{Result, ServiceError};
use crate::Service;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// A password shorter than this is refused.
pub const MIN_PASSWORD_LEN: usize = 8;

impl Service {
    /// Create (or reset) a user with a password in `project` (created if needed).
    pub async fn set_user_password(&self, user: &str, project: &str, password: &str) -> Result<()> {
        crate::validate::name("user", user)?;
        crate::validate::name("project", project)?;
        if password.len() < MIN_PASSWORD_LEN {
            return Err(ServiceError::invalid(
                "weak_password",
                format!("a password needs at least {MIN_PASSWORD_LEN} characters"),
            ));
        }
        let pw = password.to_owned();
        let hash = tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default().hash_password(pw.as_bytes(), &salt).map(|h| h.to_string())
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("hashing task: {e}")))?
        .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))?;
        let mut tx = self.pool.begin().await?;
        qcloud_store::tokens::ensure_project(&mut tx, project).await?;
        qcloud_store::pasqal::upsert_user(&mut tx, user, project, &hash).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Check a user's password; on success a new token of the user's project.
    pub async fn login(&self, user: &str, password: &str) -> Result<String> {
        let denied = || ServiceError::Unauthenticated("wrong username or password".into());
        let mut conn = self.pool.acquire().await?;
        let (project, hash) = qcloud_store::pasqal::user(&mut conn, user).await?.ok_or_else(denied)?;
        drop(conn);
        let pw = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
                .unwrap_or(false)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("hashing task: {e}")))?;
        if !ok {
            return Err(denied());
        }
        self.create_token(&project, user, false).await
    }
}
