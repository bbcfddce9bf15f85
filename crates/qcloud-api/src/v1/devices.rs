//! `/v1/devices`.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, Caller};
use crate::schema::{
    DeviceKindSchema, DeviceNameSchema, DeviceStatusSchema, DriverKindSchema, JsonObjectSchema, TimingSchema,
};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use qcloud_service::devices::{self as svc, AddDevice, UpdateDevice};
use qcloud_service::validate::{self, enum_field, opt_enum_field};
use qcloud_service::{DeviceKind, DeviceStatus, DriverKind, Timing};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A device as clients see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceView {
    #[schema(value_type = DeviceNameSchema)]
    pub name: String,
    #[schema(value_type = DeviceKindSchema)]
    pub kind: DeviceKind,
    #[schema(value_type = DriverKindSchema)]
    pub driver: DriverKind,
    /// The programs the device runs (a job's `program`); for an agent device the `programs` of its
    /// config, and empty when it lists none (it takes whatever its agent runs).
    pub programs: Vec<String>,
    #[schema(value_type = DeviceStatusSchema)]
    pub status: DeviceStatus,
    #[schema(minimum = 0, maximum = 100000)]
    pub num_qubits: i32,
    #[schema(value_type = TimingSchema)]
    pub timing: Timing,
    #[schema(value_type = JsonObjectSchema)]
    pub config: serde_json::Value,
    /// Jobs waiting for this device.
    #[schema(minimum = 0)]
    pub queue_length: i64,
    /// The active session that holds the device, if any; null for a session of another project
    /// (admins see every session).
    pub held_by_session: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The device's agent (agent devices; null for the others).
    pub agent: Option<AgentView>,
}

/// What is known of an agent device's agent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AgentView {
    /// Heard from within the server's `agent_offline_after`; a device whose agent is not
    /// connected is offline.
    pub connected: bool,
    /// What the agent last reported (null: it never reported).
    #[schema(value_type = Option<DeviceStatusSchema>)]
    pub status: Option<DeviceStatus>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
    /// Calibration data as the agent reported it.
    #[schema(value_type = Option<Object>)]
    pub calibration: Option<serde_json::Value>,
}

impl From<svc::DeviceView> for DeviceView {
    fn from(d: svc::DeviceView) -> Self {
        DeviceView {
            name: d.name,
            kind: d.kind,
            driver: d.driver,
            programs: match d.driver.programs() {
                Some(p) => p.iter().map(|p| p.to_string()).collect(),
                None => d
                    .config
                    .get("programs")
                    .and_then(|p| p.as_array())
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
            },
            status: d.status,
            num_qubits: d.num_qubits,
            timing: d.timing,
            config: d.config,
            queue_length: d.queue_length,
            held_by_session: d.held_by_session,
            created_at: d.created_at,
            updated_at: d.updated_at,
            agent: d.agent.map(|a| AgentView {
                connected: a.connected,
                status: a.status,
                last_seen_at: a.last_seen_at,
                message: a.message,
                calibration: a.calibration,
            }),
        }
    }
}

/// `POST /v1/devices`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceRequest {
    #[schema(value_type = DeviceNameSchema)]
    pub name: String,
    /// Default: gate.
    #[schema(value_type = Option<DeviceKindSchema>)]
    pub kind: Option<String>,
    #[schema(value_type = DriverKindSchema)]
    pub driver: String,
    /// Default: online.
    #[schema(value_type = Option<DeviceStatusSchema>)]
    pub status: Option<String>,
    #[schema(minimum = 0, maximum = 100000)]
    #[serde(deserialize_with = "crate::de::integer")]
    pub num_qubits: i32,
    /// Default: zero setup and per-shot time.
    #[schema(value_type = Option<TimingSchema>)]
    pub timing: Option<serde_json::Value>,
    /// Default: `{}`.
    #[schema(value_type = Option<JsonObjectSchema>)]
    pub config: Option<serde_json::Value>,
}

impl NewDeviceRequest {
    fn into_command(self) -> qcloud_service::Result<AddDevice> {
        validate::device_name(&self.name)?;
        Ok(AddDevice {
            kind: enum_field("kind", self.kind.as_deref().unwrap_or("gate"))?,
            driver: enum_field("driver", &self.driver)?,
            status: enum_field("status", self.status.as_deref().unwrap_or("online"))?,
            timing: self.timing.as_ref().map(validate::timing).transpose()?.unwrap_or_default(),
            config: self.config.unwrap_or_else(|| serde_json::json!({})),
            name: self.name,
            num_qubits: self.num_qubits,
        })
    }
}

/// `PATCH /v1/devices/{name}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    #[schema(value_type = Option<DeviceStatusSchema>)]
    pub status: Option<String>,
    /// Replaces the timing model (absent keys are 0).
    #[schema(value_type = Option<TimingSchema>)]
    pub timing: Option<serde_json::Value>,
    /// Replaces the config.
    #[schema(value_type = Option<JsonObjectSchema>)]
    pub config: Option<serde_json::Value>,
}

impl DevicePatch {
    fn into_command(self) -> qcloud_service::Result<UpdateDevice> {
        Ok(UpdateDevice {
            status: opt_enum_field("status", self.status.as_deref())?,
            timing: self.timing.as_ref().map(validate::timing).transpose()?,
            config: self.config,
        })
    }
}

/// List devices.
#[utoipa::path(get, path = "/v1/devices", operation_id = "list_devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = [DeviceView])))]
pub async fn list(State(s): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Vec<DeviceView>>> {
    Ok(Json(s.svc.list_devices(&who).await?.into_iter().map(DeviceView::from).collect()))
}

/// One device.
#[utoipa::path(get, path = "/v1/devices/{name}", operation_id = "get_device", tag = "devices", security(("bearer" = [])),
    params(("name" = DeviceNameSchema, Path, description = "Device name")),
    responses((status = 200, body = DeviceView),
        (status = 400, body = ErrorBody, description = "The name holds a NUL character"),
        (status = 404, body = ErrorBody, description = "No such device")))]
pub async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(s.svc.get_device(&who, &name).await?.into()))
}

/// Add a device (admin).
#[utoipa::path(post, path = "/v1/devices", operation_id = "create_device", tag = "devices", security(("bearer" = [])), request_body = NewDeviceRequest,
    responses((status = 201, body = DeviceView),
        (status = 403, body = ErrorBody, description = "Not an admin token"),
        (status = 409, body = ErrorBody, description = "A device of that name exists (`device_exists`)")))]
pub async fn create(
    State(s): State<AppState>,
    _a: Admin,
    ApiJson(req): ApiJson<NewDeviceRequest>,
) -> ApiResult<(StatusCode, Json<DeviceView>)> {
    Ok((StatusCode::CREATED, Json(s.svc.add_device(req.into_command()?).await?.into())))
}

/// Change a device's status, timing or config (admin).
#[utoipa::path(patch, path = "/v1/devices/{name}", operation_id = "update_device", tag = "devices", security(("bearer" = [])), request_body = DevicePatch,
    params(("name" = DeviceNameSchema, Path, description = "Device name")),
    responses((status = 200, body = DeviceView),
        (status = 403, body = ErrorBody, description = "Not an admin token"),
        (status = 404, body = ErrorBody, description = "No such device")))]
pub async fn update(
    State(s): State<AppState>,
    _a: Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(patch): ApiJson<DevicePatch>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(s.svc.update_device(&name, patch.into_command()?).await?.into()))
}
