//! Authentication: bearer tokens map to a user in a project. Tokens are random, shown once, and
//! stored as SHA-256 hashes; lookups are cached briefly so that a busy client costs one hash per
//! request, not one query.

use crate::error::{Result, ServiceError};
use crate::Service;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub project: String,
    pub user: String,
    pub admin: bool,
}

impl Principal {
    /// The operator at the server's own command line (seeding, `qcloud devices list`): an admin of
    /// no project, for reading views in full.
    pub fn operator() -> Self {
        Principal { project: String::new(), user: "operator".into(), admin: true }
    }
}

/// Prefix of every token qcloud issues, so that leaked tokens are recognisable.
pub const TOKEN_PREFIX: &str = "qc_";

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token (256 bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 10_000;

#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], (Instant, Principal)>>,
}

impl TokenCache {
    fn get(&self, hash: &[u8; 32]) -> Option<Principal> {
        let map = self.entries.lock().ok()?;
        map.get(hash).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, p)| p.clone())
    }

    fn put(&self, hash: [u8; 32], p: Principal) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= CACHE_MAX {
                map.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
                if map.len() >= CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(hash, (Instant::now(), p));
        }
    }
}

impl Service {
    /// The principal of a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let hash = hash_token(token);
        if let Some(p) = self.tokens.get(&hash) {
            return Ok(p);
        }
        let mut conn = self.pool.acquire().await?;
        let row = qcloud_store::tokens::find_by_hash(&mut conn, &hash)
            .await?
            .ok_or(ServiceError::Unauthenticated("invalid or revoked token".into()))?;
        let p = Principal { project: row.project, user: row.user_name, admin: row.is_admin };
        self.tokens.put(hash, p.clone());
        Ok(p)
    }

    /// Create a token for `user` in `project` (created if needed) and return it; only its hash is
    /// stored.
    pub async fn create_token(&self, project: &str, user: &str, admin: bool) -> Result<String> {
        let token = new_token();
        self.register_token(&token, project, user, admin).await?;
        Ok(token)
    }

    /// Register a token chosen by the operator (the configured first admin token).
    pub async fn register_token(&self, token: &str, project: &str, user: &str, admin: bool) -> Result<()> {
        crate::validate::name("project", project)?;
        crate::validate::name("user", user)?;
        if token.len() < 16 {
            return Err(ServiceError::invalid("invalid_token", "a token must have at least 16 characters"));
        }
        let mut tx = self.pool.begin().await?;
        qcloud_store::tokens::ensure_project(&mut tx, project).await?;
        qcloud_store::tokens::insert(&mut tx, &hash_token(token), project, user, admin).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_stably() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40);
        assert_eq!(hash_token(&a), hash_token(&a));
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
