//! The OpenAPI description, generated from the handlers' annotations. `openapi.yaml` at the
//! repository root is this document, written by `qcloud openapi > openapi.yaml`; a test keeps
//! them equal.
//!
//! It states every rule the server enforces on a request (enums, bounds, patterns, closed
//! objects), so that a request the schema calls valid is never refused with 400 and one it calls
//! invalid never taken: `tests/compat/schemathesis` checks both. The responses every operation
//! shares (401, 429, 503, and 400 / 413 / 415 for a body) are added by [`CommonResponses`], the
//! links between operations (for stateful testing and for clients) by [`Links`].

use crate::agent;
use crate::error::{ErrorBody, ErrorDetail, RETRY_AFTER_SECONDS};
use crate::schema::{
    ClosedReasonSchema, DeviceKindSchema, DeviceNameSchema, DeviceStatusSchema, DriverKindSchema, IdlePolicySchema,
    JobStatusSchema, JsonObjectSchema, JsonValueSchema, PrioritySchema, SessionModeSchema, SessionStateSchema,
    TimingSchema,
};
use crate::v1;
use crate::v1::devices::{AgentView, DevicePatch, DeviceView, NewDeviceRequest};
use crate::v1::jobs::{JobProgress, JobResult, JobView, JobsCreated, NewBatchJob, NewJobRequest, NewJobsRequest};
use crate::v1::sessions::{NewSessionRequest, SessionView};
use crate::v1::tokens::{NewTokenRequest, NewTokenResponse, TokenView};
use crate::v1::webhooks::{
    DeliveryView, EventTypeSchema, NewWebhookRequest, NewWebhookResponse, WebhookSpecRequest, WebhookView,
};
use axum::http::header;
use axum::response::IntoResponse;
use qcloud_wire as wire;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AllOfBuilder, AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};
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
        v1::jobs::submit, v1::jobs::submit_batch, v1::jobs::list, v1::jobs::get, v1::jobs::result, v1::jobs::cancel,
        v1::tokens::list, v1::tokens::create, v1::tokens::revoke,
        v1::events::stream_events,
        v1::webhooks::create, v1::webhooks::list, v1::webhooks::get, v1::webhooks::delete, v1::webhooks::deliveries,
        agent::create_token, agent::list_tokens,
        agent::claim, agent::heartbeat, agent::progress, agent::complete, agent::fail, agent::device, agent::report,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, DeviceView, NewDeviceRequest, DevicePatch, SessionView, NewSessionRequest,
        JobView, NewJobRequest, NewJobsRequest, NewBatchJob, JobsCreated, JobResult, JobStatusSchema, SessionStateSchema, SessionModeSchema, ClosedReasonSchema,
        IdlePolicySchema, PrioritySchema, DeviceKindSchema, DriverKindSchema, DeviceStatusSchema, TimingSchema,
        JsonValueSchema, JsonObjectSchema, DeviceNameSchema, TokenView, NewTokenRequest,
        NewTokenResponse, EventTypeSchema, NewWebhookRequest, NewWebhookResponse, WebhookView, WebhookSpecRequest,
        DeliveryView,
        NewTokenResponse, AgentView, JobProgress, agent::DeviceTokenView, agent::NewDeviceTokenResponse,
        wire::ClaimRequest, wire::Claim, wire::Lease, wire::AgentJob, wire::Heartbeat, wire::HeartbeatAnswer,
        wire::StopReason, wire::Progress, wire::Complete, wire::Fail, wire::Finished, wire::AgentStatus,
        wire::DeviceReport, wire::Target, wire::Operation, wire::QubitProperties, wire::AgentDevice,
    )),
    modifiers(&BearerAuth, &CommonResponses, &DeviceOrSession, &Links),
    tags(
        (name = "devices", description = "Devices: simulators and QPUs"),
        (name = "sessions", description = "Exclusive work on one device: dedicated sessions and batches"),
        (name = "jobs", description = "Jobs and their results"),
        (name = "tokens", description = "API tokens (admin)"),
        (name = "events", description = "State changes of jobs and sessions as Server-Sent Events"),
        (name = "webhooks", description = "Signed POSTs of events to subscribed URLs, from a durable outbox"),
        (name = "agent", description = "The agent protocol: an agent serves one device with a device token (docs/agent-protocol.md)"),
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
            c.add_security_scheme(
                "device_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("A device token (`qcloud devices token NAME`): the agent routes only"))
                        .build(),
                ),
            );
        }
    }
}

/// A response of the shared error body, optionally with a `Retry-After` header.
fn error_response(description: &str, retry_after: bool) -> Response {
    let mut r = ResponseBuilder::new()
        .description(description)
        .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build());
    if retry_after {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(0)))
                .description(Some(format!("Seconds to wait before retrying ({RETRY_AFTER_SECONDS} for a 503)")))
                .build(),
        );
    }
    r.build()
}

/// The responses every operation can give, as shared components referenced from each: 401 and
/// 503 from the server as it is, 429 from the per-token rate limits (declared ahead of them), and
/// for an operation with a JSON body 400 (malformed or invalid), 413 (too large) and 415 (not
/// JSON). An operation that declares one of these itself keeps its own.
struct CommonResponses;

impl CommonResponses {
    const ALWAYS: &'static [(&'static str, &'static str)] =
        &[("401", "Unauthorized"), ("429", "TooManyRequests"), ("503", "Unavailable")];
    const WITH_BODY: &'static [(&'static str, &'static str)] =
        &[("400", "BadRequest"), ("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType")];
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch].into_iter().flatten()
}

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let shared = [
            ("Unauthorized", error_response("No token, or one that is unknown, expired or revoked (`unauthenticated`)", false)),
            (
                "TooManyRequests",
                error_response("The token's rate limit is reached (`rate_limited`); retry after `Retry-After` seconds", true),
            ),
            (
                "Unavailable",
                error_response("The database is unavailable or busy (`unavailable`); retry after `Retry-After` seconds", true),
            ),
            (
                "BadRequest",
                error_response(
                    "The body is not valid JSON (`invalid_json`), does not match the schema (`invalid_body`), or a value is out of range (`invalid_field`, `invalid_ttl`, `missing_field`, ...)",
                    false,
                ),
            ),
            ("PayloadTooLarge", error_response("The body or the payload is too large (`payload_too_large`)", false)),
            (
                "UnsupportedMediaType",
                error_response("The body is not sent as `Content-Type: application/json` (`unsupported_media_type`)", false),
            ),
        ];
        if let Some(c) = openapi.components.as_mut() {
            for (name, r) in shared {
                c.responses.insert(name.to_string(), RefOr::T(r));
            }
        }
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                let has_body = op.request_body.as_ref().is_some_and(|b: &RequestBody| !b.content.is_empty());
                let common = Self::ALWAYS.iter().chain(if has_body { Self::WITH_BODY } else { &[] });
                for (status, name) in common {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
                }
            }
        }
    }
}

/// `POST /v1/jobs` needs a device or a session (400 `missing_field` otherwise): the request's
/// schema is the object and "one of the two is a string".
struct DeviceOrSession;

impl Modify for DeviceOrSession {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(schemas) = openapi.components.as_mut().map(|c| &mut c.schemas) else { return };
        let Some(object) = schemas.remove("NewJobRequest") else { return };
        let given =
            |field: &str, schema: RefOr<Schema>| ObjectBuilder::new().required(field).property(field, schema).build();
        let either = AnyOfBuilder::new()
            .item(given("device", Ref::from_schema_name("DeviceName").into()))
            .item(given(
                "session_id",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Uuid)))
                    .into(),
            ))
            .description(Some("`device`, `session_id` or both, not null"));
        let description = match &object {
            RefOr::T(Schema::Object(o)) => o.description.clone(),
            _ => None,
        };
        let combined = AllOfBuilder::new().item(object).item(either).description(description);
        schemas.insert("NewJobRequest".to_string(), combined.into());
    }
}

/// OpenAPI links: what a created device, session or job leads to (its own routes, and a session
/// or a job on the new device, a job in the new session). Stateful testing follows them to build
/// real devices, sessions and jobs.
struct Links;

impl Links {
    /// (source operation, source status, link name, target operation, parameters, request body)
    #[allow(clippy::type_complexity)]
    fn table() -> Vec<(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Vec<(&'static str, &'static str)>,
        Option<serde_json::Value>,
    )> {
        use serde_json::json;
        let name = vec![("name", "$response.body#/name")];
        let session = vec![("id", "$response.body#/id")];
        let job = vec![("id", "$response.body#/id")];
        let mut t = vec![
            ("create_device", "201", "GetDevice", "get_device", name.clone(), None),
            ("create_device", "201", "UpdateDevice", "update_device", name.clone(), None),
            (
                "create_device",
                "201",
                "OpenSession",
                "create_session",
                vec![],
                Some(json!({"device": "$response.body#/name"})),
            ),
            (
                "create_device",
                "201",
                "SubmitJob",
                "submit_job",
                vec![],
                Some(json!({"device": "$response.body#/name", "program": "$response.body#/programs/0"})),
            ),
            ("create_session", "201", "GetSession", "get_session", session.clone(), None),
            ("create_session", "201", "CloseSession", "close_session", session.clone(), None),
            ("create_session", "201", "CancelSession", "cancel_session", session.clone(), None),
            (
                "create_session",
                "201",
                "SubmitJob",
                "submit_job",
                vec![],
                Some(json!({"session_id": "$response.body#/id"})),
            ),
        ];
        let hook = vec![("id", "$response.body#/id")];
        t.push(("create_webhook", "201", "GetWebhook", "get_webhook", hook.clone(), None));
        t.push(("create_webhook", "201", "ListDeliveries", "list_webhook_deliveries", hook.clone(), None));
        t.push(("create_webhook", "201", "DeleteWebhook", "delete_webhook", hook, None));
        for status in ["201", "200"] {
            t.push(("submit_job", status, "GetJob", "get_job", job.clone(), None));
            t.push(("submit_job", status, "GetJobResult", "get_job_result", job.clone(), None));
            t.push(("submit_job", status, "CancelJob", "cancel_job", job.clone(), None));
        }
        t
    }
}

impl Modify for Links {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (source, status, name, target, params, body) in Self::table() {
            let op = openapi
                .paths
                .paths
                .values_mut()
                .flat_map(operations)
                .find(|op| op.operation_id.as_deref() == Some(source));
            let Some(RefOr::T(response)) = op.and_then(|op| op.responses.responses.get_mut(status)) else { continue };
            let mut link = LinkBuilder::new().operation_id(target);
            for (p, v) in params {
                link = link.parameter(p, v);
            }
            response.links.insert(name.to_string(), RefOr::T(link.request_body(body).build()));
        }
    }
}

/// The document, with the links' keys in the spelling OpenAPI uses: utoipa 5.5 writes a link's
/// `operationId` and `requestBody` in snake case, which no client reads. A YAML value keeps the
/// keys' order, so the file reads like the derive wrote it.
fn document() -> serde_yaml::Value {
    let mut doc = ApiDoc::openapi();
    // The crate's version would make the file change at every release bump; the API has its own.
    doc.info.version = "1".into();
    let mut v = serde_yaml::to_value(&doc).unwrap_or(serde_yaml::Value::Null);
    camel_case_links(&mut v);
    v
}

fn camel_case_links(v: &mut serde_yaml::Value) {
    use serde_yaml::Value;
    match v {
        Value::Mapping(m) => {
            for (k, child) in m.iter_mut() {
                match (k.as_str(), child) {
                    (Some("links"), Value::Mapping(links)) => {
                        for (_, link) in links.iter_mut() {
                            if let Value::Mapping(l) = link {
                                *l = std::mem::take(l)
                                    .into_iter()
                                    .map(|(k, v)| match k.as_str() {
                                        Some("operation_id") => (Value::from("operationId"), v),
                                        Some("operation_ref") => (Value::from("operationRef"), v),
                                        Some("request_body") => (Value::from("requestBody"), v),
                                        _ => (k, v),
                                    })
                                    .collect();
                            }
                        }
                    }
                    (_, child) => camel_case_links(child),
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(camel_case_links),
        _ => {}
    }
}

/// The document as YAML (what `openapi.yaml` holds).
pub fn yaml() -> String {
    serde_yaml::to_string(&document()).unwrap_or_else(|e| format!("# could not render the OpenAPI document: {e}\n"))
}

pub async fn serve_yaml() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/yaml")], yaml())
}

pub async fn serve_json() -> impl IntoResponse {
    axum::Json(serde_json::to_value(document()).unwrap_or_default())
}
