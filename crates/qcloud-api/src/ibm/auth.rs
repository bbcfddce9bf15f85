//! Who is calling the facade. `POST /identity/token` exchanges a qcloud token for an HS256 JWT
//! (`iat`, `exp`, user, project) signed with a key every replica reads from the database; the
//! runtime routes take that JWT, or a plain qcloud token, as `Authorization: Bearer` (or
//! `apikey`). A `Service-CRN` header must name the caller's own project.

use super::error::IbmError;
use super::IbmState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use qcloud_service::Principal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Name of the signing key in the database.
pub const KEY_NAME: &str = "ibm_jwt";
/// Lifetime of an issued token, in seconds (IBM IAM's: one hour).
pub const TOKEN_TTL_SECONDS: i64 = 3600;
const ISSUER: &str = "qcloud";

/// The claims of a facade token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user.
    pub sub: String,
    pub project: String,
    /// The project's stable id.
    pub pid: Uuid,
    #[serde(default)]
    pub adm: bool,
    pub iat: i64,
    pub exp: i64,
}

/// Sign a token for `who` at `now` (unix seconds).
pub fn issue(key: &[u8], who: &Principal, project_id: Uuid, now: i64) -> Result<(String, Claims), IbmError> {
    let claims = Claims {
        iss: ISSUER.into(),
        sub: who.user.clone(),
        project: who.project.clone(),
        pid: project_id,
        adm: who.admin,
        iat: now,
        exp: now + TOKEN_TTL_SECONDS,
    };
    let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(key))
        .map_err(|e| IbmError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("signing a token: {e}")))?;
    Ok((token, claims))
}

/// Check a token's signature, algorithm, issuer and expiry.
pub fn verify(key: &[u8], token: &str) -> Result<Claims, IbmError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.leeway = 5;
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &v).map(|d| d.claims).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        IbmError::unauthorized(match e.kind() {
            ErrorKind::ExpiredSignature => "the access token has expired; request a new one".to_string(),
            ErrorKind::InvalidSignature => "the access token's signature is not valid".to_string(),
            _ => format!("the access token is not valid: {e}"),
        })
    })
}

/// A token that looks like a JWT (three base64url parts) rather than a qcloud token.
fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3 && token.starts_with("eyJ")
}

/// The credential in `Authorization: Bearer <t>` or `Authorization: apikey <t>`.
pub fn credential(parts: &Parts) -> Result<&str, IbmError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| IbmError::unauthorized("missing 'Authorization: Bearer <token>' header"))?;
    let h = header.to_str().map_err(|_| IbmError::unauthorized("the Authorization header is not text"))?;
    let (scheme, token) = h.split_once(' ').unwrap_or((h, ""));
    let token = token.trim();
    if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("apikey")) || token.is_empty() {
        return Err(IbmError::unauthorized("the Authorization header must be 'Bearer <token>' or 'apikey <token>'"));
    }
    Ok(token)
}

/// The authenticated caller and its project's stable id; `Service-CRN`, when sent, names it.
pub struct IbmCaller {
    pub who: Principal,
    pub project_id: Uuid,
}

impl IbmCaller {
    /// The caller's instance CRN.
    pub fn crn(&self) -> String {
        super::crn::of_project(self.project_id)
    }
}

impl FromRequestParts<IbmState> for IbmCaller {
    type Rejection = IbmError;

    async fn from_request_parts(parts: &mut Parts, state: &IbmState) -> Result<Self, Self::Rejection> {
        let token = credential(parts)?;
        let caller = if looks_like_jwt(token) {
            let c = verify(state.signing_key().await?, token)?;
            IbmCaller { who: Principal { project: c.project, user: c.sub, admin: c.adm }, project_id: c.pid }
        } else {
            let who = state.svc.authenticate(token).await.map_err(|e| match e {
                qcloud_service::ServiceError::Unauthenticated(m) => IbmError::unauthorized(m),
                other => other.into(),
            })?;
            let project_id = state.project_id(&who).await?;
            IbmCaller { who, project_id }
        };
        if let Some(crn) = parts.headers.get("service-crn") {
            let crn = crn.to_str().unwrap_or_default();
            if super::crn::project_id(crn) != Some(caller.project_id) {
                return Err(IbmError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!("the instance '{crn}' is not one this token may use; use {}", caller.crn()),
                ));
            }
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> Principal {
        Principal { project: "p".into(), user: "u".into(), admin: false }
    }

    #[test]
    fn issued_tokens_verify_and_carry_the_caller() {
        let key = [7u8; 32];
        let pid = Uuid::now_v7();
        let (t, c) = issue(&key, &who(), pid, chrono::Utc::now().timestamp()).unwrap();
        assert!(looks_like_jwt(&t));
        assert_eq!(c.exp - c.iat, TOKEN_TTL_SECONDS);
        let back = verify(&key, &t).unwrap();
        assert_eq!((back.sub.as_str(), back.project.as_str(), back.pid), ("u", "p", pid));
    }

    #[test]
    fn forged_expired_and_foreign_tokens_are_refused() {
        let key = [7u8; 32];
        let pid = Uuid::now_v7();
        let now = chrono::Utc::now().timestamp();
        let (expired, _) = issue(&key, &who(), pid, now - 2 * TOKEN_TTL_SECONDS).unwrap();
        assert!(verify(&key, &expired).unwrap_err().message.contains("expired"));
        let (foreign, _) = issue(&[8u8; 32], &who(), pid, now).unwrap();
        assert_eq!(verify(&key, &foreign).unwrap_err().status, StatusCode::UNAUTHORIZED);
        // alg "none", as the IBM client accepts from IAM, is not accepted here.
        let (good, _) = issue(&key, &who(), pid, now).unwrap();
        let mut parts = good.split('.');
        let _ = parts.next();
        let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts.next().unwrap());
        assert!(verify(&key, &unsigned).is_err());
        assert!(verify(&key, "eyJ.garbage.x").is_err());
    }
}
