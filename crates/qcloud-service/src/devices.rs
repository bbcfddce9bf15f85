//! Device use cases: list, inspect, and (admin) add and change devices.

use crate::error::{Result, ServiceError};
use crate::Service;
use chrono::{DateTime, Utc};
use qcloud_core::{DeviceKind, DeviceStatus, DriverKind, Timing};
use qcloud_store::devices::{DeviceOverview, DeviceRow, NewDevice};
use serde::{Deserialize, Serialize};
use tracing::instrument;
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
    /// The active session that holds the device, if any.
    pub held_by_session: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
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

pub(crate) fn parse_enum<T: std::str::FromStr<Err = qcloud_core::UnknownValue>>(
    field: &'static str,
    v: &str,
) -> Result<T> {
    v.parse().map_err(|e: qcloud_core::UnknownValue| ServiceError::invalid("invalid_field", format!("{field}: {e}")))
}

fn parse_timing(v: &serde_json::Value) -> Result<Timing> {
    let t: Timing = serde_json::from_value(v.clone())
        .map_err(|e| ServiceError::invalid("invalid_field", format!("timing: {e}")))?;
    t.validate().map_err(|m| ServiceError::invalid("invalid_field", m))?;
    Ok(t)
}

fn check_config(v: &serde_json::Value) -> Result<()> {
    if !v.is_object() {
        return Err(ServiceError::invalid("invalid_field", "config must be a JSON object"));
    }
    Ok(())
}

pub(crate) fn device_view(row: DeviceRow, queue_length: i64, held_by: Option<Uuid>) -> Result<DeviceView> {
    let bad = |e: qcloud_core::UnknownValue| ServiceError::Internal(format!("stored device: {e}"));
    Ok(DeviceView {
        kind: row.kind.parse().map_err(bad)?,
        driver: row.driver.parse().map_err(bad)?,
        status: row.status.parse().map_err(bad)?,
        num_qubits: row.num_qubits,
        timing: serde_json::from_value(row.timing.0).unwrap_or_default(),
        config: row.config.0,
        queue_length,
        held_by_session: held_by,
        created_at: row.created_at,
        updated_at: row.updated_at,
        name: row.name,
    })
}

fn overview_view(o: DeviceOverview) -> Result<DeviceView> {
    device_view(o.device, o.queued_jobs, o.held_by)
}

impl Service {
    pub async fn list_devices(&self) -> Result<Vec<DeviceView>> {
        let mut conn = self.pool.acquire().await?;
        qcloud_store::devices::list(&mut conn).await?.into_iter().map(overview_view).collect()
    }

    pub async fn get_device(&self, name: &str) -> Result<DeviceView> {
        let mut conn = self.pool.acquire().await?;
        let o = qcloud_store::devices::overview(&mut conn, name)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", name))?;
        overview_view(o)
    }

    #[instrument(skip_all, fields(device = %req.name))]
    pub async fn create_device(&self, req: NewDeviceRequest) -> Result<DeviceView> {
        if req.name.is_empty()
            || req.name.len() > 64
            || !req.name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return Err(ServiceError::invalid(
                "invalid_field",
                "name: 1 to 64 characters of A-Z, a-z, 0-9, '_', '.', '-'",
            ));
        }
        let kind: DeviceKind = parse_enum("kind", req.kind.as_deref().unwrap_or("gate"))?;
        let driver: DriverKind = parse_enum("driver", &req.driver)?;
        let status: DeviceStatus = parse_enum("status", req.status.as_deref().unwrap_or("online"))?;
        if !(0..=100_000).contains(&req.num_qubits) {
            return Err(ServiceError::invalid("invalid_field", "num_qubits must be between 0 and 100000"));
        }
        let timing = match &req.timing {
            Some(t) => parse_timing(t)?,
            None => Timing::default(),
        };
        let config = req.config.unwrap_or_else(|| serde_json::json!({}));
        check_config(&config)?;
        let mut conn = self.pool.acquire().await?;
        let row = qcloud_store::devices::insert(
            &mut conn,
            NewDevice {
                name: &req.name,
                kind: kind.as_str(),
                driver: driver.as_str(),
                status: status.as_str(),
                num_qubits: req.num_qubits,
                timing: serde_json::to_value(timing).map_err(|e| ServiceError::Internal(e.to_string()))?,
                config,
            },
        )
        .await?
        .ok_or_else(|| ServiceError::conflict("device_exists", format!("device '{}' already exists", req.name)))?;
        device_view(row, 0, None)
    }

    #[instrument(skip_all, fields(device = %name))]
    pub async fn update_device(&self, name: &str, patch: DevicePatch) -> Result<DeviceView> {
        let status = match &patch.status {
            Some(s) => Some(parse_enum::<DeviceStatus>("status", s)?),
            None => None,
        };
        let timing = match &patch.timing {
            Some(t) => Some(serde_json::to_value(parse_timing(t)?).map_err(|e| ServiceError::Internal(e.to_string()))?),
            None => None,
        };
        if let Some(c) = &patch.config {
            check_config(c)?;
        }
        let mut tx = self.pool.begin().await?;
        qcloud_store::devices::update(&mut tx, name, status.map(|s| s.as_str()), timing, patch.config)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", name))?;
        // A resumed device may have work waiting.
        qcloud_store::notify(&mut tx, qcloud_store::channel::WAKE, name).await?;
        tx.commit().await?;
        self.get_device(name).await
    }
}
