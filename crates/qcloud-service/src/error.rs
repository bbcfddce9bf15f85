//! The service layer's error: what went wrong, in terms a client can act on. The API maps each
//! variant to a status code; `Db` and `Internal` are the only real faults.

use qcloud_store::Error as DbError;
use std::borrow::Cow;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No token, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthenticated(Cow<'static, str>),
    /// A valid token that may not do this (admin routes).
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    /// The object does not exist, or belongs to another project.
    #[error("{what} '{id}' not found")]
    NotFound { what: &'static str, id: String },
    /// The request is malformed or names something invalid.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// The request is valid but conflicts with the object's state (closed session, finished job).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request is well-formed but cannot be taken as it is (an idempotency key reused with a
    /// different request): 422.
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// The project's quota of device seconds is used up (rule 13).
    #[error("{0}")]
    QuotaExceeded(String),
    /// A leader call made by a replica whose term has ended (another replica leads now).
    #[error("leader term lost")]
    NotLeader,
    /// A worker call made with a lease that is no longer the job's (the job was recovered and
    /// runs elsewhere): nothing was recorded.
    #[error("the job's lease was lost")]
    LeaseLost,
    /// One job of a bulk submission was refused (`index`: its place in the request, 0-based);
    /// nothing of the submission was stored.
    #[error("jobs[{index}]: {source}")]
    AtIndex { index: usize, source: Box<ServiceError> },
    #[error("database error: {0}")]
    Db(#[from] qcloud_store::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid { code, message: message.into() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Conflict { code, message: message.into() }
    }

    /// A database that cannot be reached, or a transaction that lost a race it may win on retry
    /// (deadlock, serialization failure): worth a 503 and a retry, not a 500.
    pub fn is_unavailable(&self) -> bool {
        match self {
            ServiceError::Db(DbError::PoolTimedOut | DbError::PoolClosed | DbError::Io(_)) => true,
            ServiceError::Db(DbError::Database(e)) => matches!(e.code().as_deref(), Some("40P01" | "40001")),
            ServiceError::AtIndex { source, .. } => source.is_unavailable(),
            _ => false,
        }
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        ServiceError::NotFound { what, id: id.to_string() }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
