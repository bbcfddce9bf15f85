//! `/v1/devices`.

use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiPath, Caller};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use qcloud_service::devices::{DevicePatch, DeviceView, NewDeviceRequest};

/// List devices.
#[utoipa::path(get, path = "/v1/devices", operation_id = "list_devices", tag = "devices", security(("bearer" = [])),
    responses((status = 200, body = [DeviceView]), (status = 401, body = ErrorBody)))]
pub async fn list(State(s): State<AppState>, _c: Caller) -> ApiResult<Json<Vec<DeviceView>>> {
    Ok(Json(s.svc.list_devices().await?))
}

/// One device.
#[utoipa::path(get, path = "/v1/devices/{name}", operation_id = "get_device", tag = "devices", security(("bearer" = [])),
    params(("name" = String, Path, description = "Device name")),
    responses((status = 200, body = DeviceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(s): State<AppState>, _c: Caller, ApiPath(name): ApiPath<String>) -> ApiResult<Json<DeviceView>> {
    Ok(Json(s.svc.get_device(&name).await?))
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
    Ok((StatusCode::CREATED, Json(s.svc.create_device(req).await?)))
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
    Ok(Json(s.svc.update_device(&name, patch).await?))
}
