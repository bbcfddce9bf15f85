//! Authentication and token management: bearer tokens map to a user in a project. Tokens are
//! random, shown once, and stored as SHA-256 hashes; they may expire and may be revoked.
//!
//! Look-ups are cached briefly so that a busy client costs one hash per request, not one query.
//! The cache never outlives what it caches: an expiry is checked on every hit, and a revocation
//! reaches every replica at once (`NOTIFY qcloud_tokens` in the revoking transaction; each
//! replica's [`Service::start_token_watch`] drops the entry). A replica that is not listening (no
//! watch started, or its LISTEN connection is down) does not use the cache at all.

use crate::error::{Result, ServiceError};
use crate::Service;
use base64::Engine;
use chrono::{DateTime, Utc};
use qcloud_store::{channel, tokens as store, PgListener};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{info, instrument, warn};
use uuid::Uuid;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// Project and user of the admin token made on first start.
pub const FIRST_ADMIN_PROJECT: &str = "admin";
pub const FIRST_ADMIN_USER: &str = "admin";

/// Longest lifetime a token may be given (100 years: "no expiry" is `None`).
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(100 * 365 * 86_400);

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token (256 bits).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// A token as admins see it: never the token itself nor its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenView {
    pub id: Uuid,
    pub project: String,
    pub user: String,
    pub admin: bool,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<store::TokenInfo> for TokenView {
    fn from(t: store::TokenInfo) -> Self {
        TokenView {
            id: t.id,
            project: t.project,
            user: t.user_name,
            admin: t.is_admin,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// Make a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub project: String,
    pub user: String,
    pub admin: bool,
    /// Lifetime from now (at least one second); `None`: until revoked.
    pub expires_in: Option<Duration>,
}

/// A token just made: the token itself (shown this once) and its view.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub view: TokenView,
}

const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 10_000;

#[derive(Debug, Clone)]
struct Cached {
    at: Instant,
    id: Uuid,
    expires_at: Option<DateTime<Utc>>,
    principal: Principal,
}

/// Token look-ups of the last [`CACHE_TTL`], usable only while this replica listens for
/// revocations.
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<[u8; 32], Cached>>,
    /// Whether the revocation listener is connected (else every look-up goes to the database).
    watching: AtomicBool,
    /// Bumped at every eviction, so that a look-up that raced a revocation does not cache what
    /// it read before the revocation.
    generation: AtomicU64,
    /// Revocations as this replica's listener receives them (for the revoker to wait on).
    echo: tokio::sync::broadcast::Sender<Uuid>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            entries: Mutex::default(),
            watching: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            echo: tokio::sync::broadcast::channel(64).0,
        }
    }
}

/// Longest a revocation waits for its notification to come back through this replica's listener.
const ECHO_WAIT: Duration = Duration::from_secs(1);
/// Then how long it gives the other replicas' listeners, which got the notification at the same
/// moment, to act on it (their processes and tasks are scheduled too).
const ECHO_SETTLE: Duration = Duration::from_millis(50);

impl TokenCache {
    /// The cached principal of a token, if cached recently and not expired at `now`.
    fn get(&self, hash: &[u8; 32], now: DateTime<Utc>) -> Option<(Uuid, Principal)> {
        if !self.watching.load(Ordering::Acquire) {
            return None;
        }
        let map = self.entries.lock().ok()?;
        let c = map.get(hash)?;
        let fresh = c.at.elapsed() < CACHE_TTL && c.expires_at.is_none_or(|e| e > now);
        fresh.then(|| (c.id, c.principal.clone()))
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Cache a look-up made when the generation was `seen` (nothing is cached if an eviction
    /// happened since, or while not watching).
    fn put(&self, hash: [u8; 32], seen: u64, id: Uuid, expires_at: Option<DateTime<Utc>>, principal: Principal) {
        if !self.watching.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut map) = self.entries.lock() {
            // Checked under the lock: evictions bump the generation under it too.
            if self.generation() != seen {
                return;
            }
            if map.len() >= CACHE_MAX {
                map.retain(|_, c| c.at.elapsed() < CACHE_TTL);
                if map.len() >= CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(hash, Cached { at: Instant::now(), id, expires_at, principal });
        }
    }

    /// Drop a token (revoked).
    fn evict(&self, id: Uuid) {
        if let Ok(mut map) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            map.retain(|_, c| c.id != id);
        }
    }

    /// Drop everything and say whether the cache may be used from now on.
    fn reset(&self, watching: bool) {
        if let Ok(mut map) = self.entries.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.watching.store(watching, Ordering::Release);
            map.clear();
        }
    }
}

fn check_expires_in(d: Option<Duration>) -> Result<Option<i64>> {
    match d {
        None => Ok(None),
        Some(d) if d < Duration::from_secs(1) => {
            Err(ServiceError::invalid("invalid_expires_in", "a token must be valid for at least 1 second"))
        }
        Some(d) if d > MAX_EXPIRES_IN => {
            Err(ServiceError::invalid("invalid_expires_in", "a token may be valid for at most 100 years"))
        }
        Some(d) => Ok(Some(d.as_millis() as i64)),
    }
}

impl Service {
    /// The principal of a bearer token: 401 for a token that is unknown, revoked or expired.
    pub async fn authenticate(&self, token: &str) -> Result<Principal> {
        let hash = hash_token(token);
        if let Some((_, p)) = self.tokens.get(&hash, Utc::now()) {
            return Ok(p);
        }
        let seen = self.tokens.generation();
        let mut conn = self.pool.acquire().await?;
        let Some(row) = store::find_by_hash(&mut conn, &hash).await? else {
            drop(conn);
            if self.is_device_token(token).await? {
                return Err(ServiceError::Forbidden(
                    "a device token may use only the agent routes (/v1/agent/...)".into(),
                ));
            }
            return Err(ServiceError::Unauthenticated("invalid, expired or revoked token".into()));
        };
        let p = Principal { project: row.project, user: row.user_name, admin: row.is_admin };
        self.tokens.put(hash, seen, row.id, row.expires_at, p.clone());
        Ok(p)
    }

    /// Create a token for `user` in `project` (created if needed) and return it; only its hash is
    /// stored.
    pub async fn create_token(&self, project: &str, user: &str, admin: bool) -> Result<String> {
        let cmd = NewToken { project: project.into(), user: user.into(), admin, expires_in: None };
        Ok(self.issue_token(cmd).await?.token)
    }

    /// Make a token (admin): the token is returned once, only its hash is stored.
    #[instrument(skip_all, fields(project = %cmd.project, user = %cmd.user, admin = cmd.admin))]
    pub async fn issue_token(&self, cmd: NewToken) -> Result<IssuedToken> {
        crate::validate::name("project", &cmd.project)?;
        crate::validate::name("user", &cmd.user)?;
        let expires_in_ms = check_expires_in(cmd.expires_in)?;
        let token = new_token();
        let mut tx = self.pool.begin().await?;
        store::ensure_project(&mut tx, &cmd.project).await?;
        let info = store::insert(&mut tx, &hash_token(&token), &cmd.project, &cmd.user, cmd.admin, expires_in_ms)
            .await?
            .ok_or_else(|| ServiceError::Internal("a new random token collided with a stored one".into()))?;
        tx.commit().await?;
        info!(token_id = %info.id, "token created");
        Ok(IssuedToken { token, view: info.into() })
    }

    /// Register a token chosen by the operator (the configured first admin token); registering
    /// it again is a no-op.
    pub async fn register_token(&self, token: &str, project: &str, user: &str, admin: bool) -> Result<()> {
        crate::validate::name("project", project)?;
        crate::validate::name("user", user)?;
        if token.len() < 16 {
            return Err(ServiceError::invalid("invalid_token", "a token must have at least 16 characters"));
        }
        let mut tx = self.pool.begin().await?;
        store::ensure_project(&mut tx, project).await?;
        store::insert(&mut tx, &hash_token(token), project, user, admin, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// On a database with no usable admin token (none, or all revoked or expired), make one and
    /// return it (shown once; only its hash is stored); otherwise `None`. Replicas starting
    /// together make one between them: the check and the insert hold an advisory lock.
    pub async fn ensure_first_admin_token(&self) -> Result<Option<String>> {
        let mut tx = self.pool.begin().await?;
        store::lock_first_admin(&mut tx).await?;
        if store::active_admin_exists(&mut tx).await? {
            return Ok(None);
        }
        let token = new_token();
        store::ensure_project(&mut tx, FIRST_ADMIN_PROJECT).await?;
        let info = store::insert(&mut tx, &hash_token(&token), FIRST_ADMIN_PROJECT, FIRST_ADMIN_USER, true, None)
            .await?
            .ok_or_else(|| ServiceError::Internal("a new random token collided with a stored one".into()))?;
        tx.commit().await?;
        info!(token_id = %info.id, "first admin token created");
        Ok(Some(token))
    }

    /// Every token, newest first (admin).
    pub async fn list_tokens(&self) -> Result<Vec<TokenView>> {
        let mut conn = self.pool.acquire().await?;
        Ok(store::list(&mut conn).await?.into_iter().map(TokenView::from).collect())
    }

    /// Revoke a token (admin): refused at once on every replica. Revoking a revoked token is a
    /// no-op; an unknown id is 404.
    #[instrument(skip_all, fields(token_id = %id))]
    pub async fn revoke_token(&self, id: Uuid) -> Result<TokenView> {
        let mut echo = self.tokens.echo.subscribe();
        let mut tx = self.pool.begin().await?;
        let Some(info) = store::revoke(&mut tx, id).await? else {
            drop(tx);
            // A device token (never cached: refused from now on by every replica).
            let d = self.revoke_device_token(id).await?.ok_or_else(|| ServiceError::not_found("token", id))?;
            info!(device = %d.device, "device token revoked");
            return Ok(TokenView {
                id: d.id,
                project: String::new(),
                user: format!("device:{}", d.device),
                admin: false,
                created_at: d.created_at,
                expires_at: None,
                revoked_at: d.revoked_at,
            });
        };
        qcloud_store::notify(&mut tx, channel::TOKENS, &id.to_string()).await?;
        tx.commit().await?;
        self.tokens.evict(id);
        // Postgres hands a notification to every listener at commit; once ours has it back (and a
        // moment more), the other replicas' listeners have acted on it too: answer then, so that
        // a client that revokes and then tries the token on another replica sees it refused.
        if self.token_cache_is_live() {
            let seen = tokio::time::timeout(ECHO_WAIT, async {
                loop {
                    match echo.recv().await {
                        Ok(got) if got == id => return true,
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
                    }
                }
            })
            .await;
            if matches!(seen, Ok(true)) {
                tokio::time::sleep(ECHO_SETTLE).await;
            } else {
                warn!("the revocation's notification did not come back in time");
            }
        }
        info!("token revoked");
        Ok(info.into())
    }

    /// Listen for revocations (one dedicated database connection) and drop them from this
    /// replica's token cache; the cache is used only while the listener is connected. Returns
    /// once the first connection listens (so a server takes requests with a live cache); the
    /// task reconnects after a loss. Abort it to stop.
    pub async fn start_token_watch(&self) -> Result<tokio::task::JoinHandle<()>> {
        let first = self.token_listener().await?;
        let svc = self.clone();
        Ok(tokio::spawn(async move {
            let mut listener = Some(first);
            loop {
                let result = match listener.take() {
                    Some(l) => svc.watch_tokens(l).await,
                    None => match svc.token_listener().await {
                        Ok(l) => svc.watch_tokens(l).await,
                        Err(e) => Err(e),
                    },
                };
                svc.tokens.reset(false);
                if let Err(e) = result {
                    warn!(error = %e, "token revocation listener lost; token look-ups bypass the cache");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }

    /// Whether this replica serves token look-ups from its cache (its revocation listener is
    /// connected).
    pub fn token_cache_is_live(&self) -> bool {
        self.tokens.watching.load(Ordering::Acquire)
    }

    async fn token_listener(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen(channel::TOKENS).await?;
        // Whatever was revoked while nobody listened is dropped with the rest.
        self.tokens.reset(true);
        Ok(listener)
    }

    /// Drop each revoked token until the connection drops (`try_recv` says so: notifications
    /// may have been missed then).
    async fn watch_tokens(&self, mut listener: PgListener) -> Result<()> {
        while let Some(n) = listener.try_recv().await? {
            if let Ok(id) = n.payload().parse::<Uuid>() {
                self.tokens.evict(id);
                let _ = self.tokens.echo.send(id);
            }
        }
        Err(ServiceError::Internal("the LISTEN connection closed".into()))
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

    fn alice() -> Principal {
        Principal { project: "p".into(), user: "alice".into(), admin: false }
    }

    #[test]
    fn a_cache_hit_checks_the_expiry() {
        let cache = TokenCache::default();
        cache.reset(true);
        let now = Utc::now();
        let (h, id) = ([1u8; 32], Uuid::now_v7());
        cache.put(h, cache.generation(), id, Some(now + chrono::Duration::seconds(5)), alice());
        assert_eq!(cache.get(&h, now).map(|(i, _)| i), Some(id), "valid: served from the cache");
        assert_eq!(cache.get(&h, now + chrono::Duration::seconds(5)), None, "expired: not served");
        assert_eq!(cache.get(&h, now + chrono::Duration::seconds(6)), None);
    }

    #[test]
    fn evicted_and_raced_lookups_are_not_served() {
        let cache = TokenCache::default();
        cache.reset(true);
        let now = Utc::now();
        let (h, id) = ([2u8; 32], Uuid::now_v7());
        cache.put(h, cache.generation(), id, None, alice());
        assert!(cache.get(&h, now).is_some());
        cache.evict(id);
        assert_eq!(cache.get(&h, now), None, "revoked: dropped");
        // A look-up that read the database before a revocation must not cache what it read.
        let seen = cache.generation();
        cache.evict(id);
        cache.put(h, seen, id, None, alice());
        assert_eq!(cache.get(&h, now), None);
    }

    #[test]
    fn without_the_revocation_listener_nothing_is_cached() {
        let cache = TokenCache::default();
        let now = Utc::now();
        cache.put([3u8; 32], cache.generation(), Uuid::now_v7(), None, alice());
        assert_eq!(cache.get(&[3u8; 32], now), None, "never watched");
        cache.reset(true);
        cache.put([3u8; 32], cache.generation(), Uuid::now_v7(), None, alice());
        assert!(cache.get(&[3u8; 32], now).is_some());
        cache.reset(false);
        assert_eq!(cache.get(&[3u8; 32], now), None, "listener lost: the cache is dropped and bypassed");
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(check_expires_in(None).unwrap(), None);
        assert_eq!(check_expires_in(Some(Duration::from_secs(30))).unwrap(), Some(30_000));
        assert!(check_expires_in(Some(Duration::from_millis(999))).is_err());
        assert!(check_expires_in(Some(MAX_EXPIRES_IN + Duration::from_secs(1))).is_err());
    }
}
