//! The OpenAPI description, generated from the handlers' annotations. `openapi.yaml` at the
//! repository root is this document, written by `qcloud openapi > openapi.yaml`; a test keeps
//! them equal.

use crate::error::{ErrorBody, ErrorDetail};
use crate::v1;
use crate::v1::devices::{DevicePatch, DeviceView, NewDeviceRequest};
use crate::v1::jobs::{JobResult, JobView, NewJobRequest};
use crate::v1::sessions::{NewSessionRequest, SessionView};
use crate::v1::tokens::{NewTokenRequest, NewTokenResponse, TokenView};
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "qcloud native API",
        description = "Devices, sessions and jobs of a self-hosted QPU cloud. Errors are JSON `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        license(name = "Apache-2.0")
    ),
    paths(
        v1::devices::list, v1::devices::get, v1::devices::create, v1::devices::update,
        v1::sessions::create, v1::sessions::list, v1::sessions::get, v1::sessions::close, v1::sessions::cancel,
        v1::jobs::submit, v1::jobs::list, v1::jobs::get, v1::jobs::result, v1::jobs::cancel,
        v1::tokens::list, v1::tokens::create, v1::tokens::revoke,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, DeviceView, NewDeviceRequest, DevicePatch, SessionView, NewSessionRequest,
        JobView, NewJobRequest, JobResult, TokenView, NewTokenRequest, NewTokenResponse,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "devices", description = "Devices: simulators and QPUs"),
        (name = "sessions", description = "Exclusive work on one device: dedicated sessions and batches"),
        (name = "jobs", description = "Jobs and their results"),
        (name = "tokens", description = "API tokens (admin)"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The document as YAML (what `openapi.yaml` holds).
pub fn yaml() -> String {
    let mut doc = ApiDoc::openapi();
    // The crate's version would make the file change at every release bump; the API has its own.
    doc.info.version = "1".into();
    doc.to_yaml().unwrap_or_else(|e| format!("# could not render the OpenAPI document: {e}\n"))
}

pub async fn serve_yaml() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], yaml())
}

pub async fn serve_json() -> impl IntoResponse {
    let mut doc = ApiDoc::openapi();
    doc.info.version = "1".into();
    axum::Json(doc)
}
