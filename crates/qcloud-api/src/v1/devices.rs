//! `/v1/devices`.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, Caller};
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
    pub name: String,
    #[schema(value_type = String, example = "gate")]
    pub kind: DeviceKind,
    #[schema(value_type = String, example = "noop")]
    pub driver: DriverKind,
    #[schema(value_type = String, example = "online")]
    pub status: DeviceStatus,
    pub num_qubits: i32,
    #[schema(value_type = Object)]
    pub timing: Timing,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// Jobs waiting for this device.
    pub queue_length: i64,
    /// The active session that holds the device, if any; null for a session of another project
    /// (admins see every session).
    pub held_by_session: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<svc::DeviceView> for DeviceView {
    fn from(d: svc::DeviceView) -> Self {
        DeviceView {
            name: d.name,
            kind: d.kind,
            driver: d.driver,
            status: d.status,
            num_qubits: d.num_qubits,
            timing: d.timing,
            config: d.config,
            queue_length: d.queue_length,
            held_by_session: d.held_by_session,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// `POST /v1/devices`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeviceRequest {
    pub name: String,
    /// gate | analog (default: gate).
    pub kind: Option<String>,
    /// noop | statevector | analog | agent.
    pub driver: String,
    /// online | paused | offline (default: online).
    pub status: Option<String>,
    pub num_qubits: i32,
    #[schema(value_type = Option<Object>)]
    pub timing: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
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
    /// online | paused | offline.
    pub status: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub timing: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
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
    responses((status = 200, body = [DeviceView]), (status = 401, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, Caller(who): Caller) -> ApiResult<Json<Vec<DeviceView>>> {
    Ok(Json(s.svc.list_devices(&who).await?.into_iter().map(DeviceView::from).collect()))
}

/// One device.
#[utoipa::path(get, path = "/v1/devices/{name}", operation_id = "get_device", tag = "devices", security(("bearer" = [])),
    params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = DeviceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    Caller(who): Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(s.svc.get_device(&who, &name).await?.into()))
}

/// Add a device (admin).
#[utoipa::path(post, path = "/v1/devices", operation_id = "create_device", tag = "devices", security(("bearer" = [])), request_body = NewDeviceRequest,
    responses((status = 201, body = DeviceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    _a: Admin,
    ApiJson(req): ApiJson<NewDeviceRequest>,
) -> ApiResult<(StatusCode, Json<DeviceView>)> {
    Ok((StatusCode::CREATED, Json(s.svc.add_device(req.into_command()?).await?.into())))
}

/// Change a device's status, timing or config (admin).
#[utoipa::path(patch, path = "/v1/devices/{name}", operation_id = "update_device", tag = "devices", security(("bearer" = [])), request_body = DevicePatch,
    params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = DeviceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    _a: Admin,
    ApiPath(name): ApiPath<String>,
    ApiJson(patch): ApiJson<DevicePatch>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(s.svc.update_device(&name, patch.into_command()?).await?.into()))
}
