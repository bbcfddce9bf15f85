//! IBM Cloud's identity side, as much as the client needs: IAM's token exchange
//! (`IAM_URL`), Global Search listing the caller's instances (`GLOBAL_SEARCH_URL`) and the
//! Global Catalog entry of their plan (`GLOBAL_CATALOG_URL`).

use super::auth::{self, IbmCaller};
use super::error::{IbmError, IbmPath, IbmResult};
use super::IbmState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// The one plan every qcloud instance has.
pub const PLAN_ID: &str = "qcloud-open";

/// IAM answers a bad API key with 400 and its own error shape.
fn iam_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"errorCode": code, "errorMessage": message, "context": {}}))).into_response()
}

/// `POST /identity/token`, form-urlencoded `apikey=<qcloud token>` (and `grant_type`).
pub async fn token(State(s): State<IbmState>, body: String) -> Response {
    let mut apikey = None;
    let mut grant_type = None;
    for (k, v) in form_urlencoded::parse(body.as_bytes()) {
        match k.as_ref() {
            "apikey" => apikey = Some(v.into_owned()),
            "grant_type" => grant_type = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(g) = grant_type.as_deref() {
        if g != "urn:ibm:params:oauth:grant-type:apikey" {
            return iam_error(
                StatusCode::BAD_REQUEST,
                "BXNIM0109E",
                "only grant_type urn:ibm:params:oauth:grant-type:apikey is supported",
            );
        }
    }
    let Some(apikey) = apikey.filter(|k| !k.is_empty()) else {
        return iam_error(StatusCode::BAD_REQUEST, "BXNIM0103E", "the form needs an 'apikey' (a qcloud token)");
    };
    let who = match s.svc.authenticate(&apikey).await {
        Ok(w) => w,
        Err(qcloud_service::ServiceError::Unauthenticated(_)) => {
            return iam_error(StatusCode::BAD_REQUEST, "BXNIM0415E", "Provided API key could not be found.");
        }
        Err(e) => return IbmError::from(e).into_response(),
    };
    let issued = async {
        let pid = s.project_id(&who).await?;
        let key = s.signing_key().await?;
        auth::issue(key, &who, pid, chrono::Utc::now().timestamp())
    }
    .await;
    match issued {
        Ok((access_token, c)) => Json(json!({
            "access_token": access_token,
            "refresh_token": "not_supported",
            "token_type": "Bearer",
            "expires_in": auth::TOKEN_TTL_SECONDS,
            "expiration": c.exp,
            "scope": "ibm openid",
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /v3/resources/search`: the caller's instances, one per project.
pub async fn search(c: IbmCaller, State(s): State<IbmState>) -> IbmResult<Json<Value>> {
    let project = s.svc.my_project(&c.who).await?;
    let crn = c.crn();
    Ok(Json(json!({
        "items": [{
            "crn": crn,
            "name": project.name,
            "service_plan_unique_id": PLAN_ID,
            "tags": [],
            "doc": {
                "extensions": {"qcloud": {"project": project.name, "project_id": project.id}},
                "guid": project.id,
                "region_id": super::crn::REGION,
                "state": "active",
            },
        }],
        "search_cursor": null,
        "limit": 100,
    })))
}

/// `GET /catalog/{plan}`: the plan's display name and pricing type.
pub async fn catalog(c: IbmCaller, IbmPath(id): IbmPath<String>) -> IbmResult<Json<Value>> {
    let _ = c;
    if id != PLAN_ID {
        return Err(IbmError::not_found("catalog entry", &id));
    }
    Ok(Json(json!({
        "id": PLAN_ID,
        "name": "open",
        "kind": "plan",
        "overview_ui": {"en": {"display_name": "Open", "description": "qcloud: every project is an instance"}},
        "metadata": {"pricing": {"type": "free"}},
    })))
}
