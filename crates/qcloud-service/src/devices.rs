//! Device use cases: list, inspect, and (admin) add and change devices.

use crate::auth::Principal;
use crate::error::{Result, ServiceError};
use crate::validate;
use crate::Service;
use chrono::{DateTime, Utc};
use qcloud_core::{DeviceKind, DeviceStatus, DriverKind, Timing};
use qcloud_store::devices::{Device, DeviceOverview, NewDevice};
use tracing::instrument;
use uuid::Uuid;

/// A device, with its queue and the session that holds it.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub name: String,
    pub kind: DeviceKind,
    pub driver: DriverKind,
    pub status: DeviceStatus,
    pub num_qubits: i32,
    pub timing: Timing,
    pub config: serde_json::Value,
    /// Jobs waiting for this device.
    pub queue_length: i64,
    /// The active session that holds the device, if any; shown only to the session's project and
    /// to admins (another tenant's session id is not theirs to see).
    pub held_by_session: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The device's agent (agent devices).
    pub agent: Option<AgentState>,
}

/// What is known of an agent device's agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentState {
    /// Heard from within `agent_offline_after`.
    pub connected: bool,
    /// What it last reported (`None`: it never reported).
    pub status: Option<DeviceStatus>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
    /// Calibration data as the agent reported it.
    pub calibration: Option<serde_json::Value>,
}

/// Add a device (admin).
#[derive(Debug, Clone)]
pub struct AddDevice {
    pub name: String,
    pub kind: DeviceKind,
    pub driver: DriverKind,
    pub status: DeviceStatus,
    pub num_qubits: i32,
    pub timing: Timing,
    /// A JSON object (basis gates, coupling map, a Pulser device spec, limits).
    pub config: serde_json::Value,
}

impl AddDevice {
    /// A device with the defaults: gate kind, online, zero timing, empty config.
    pub fn new(name: impl Into<String>, driver: DriverKind, num_qubits: i32) -> Self {
        AddDevice {
            name: name.into(),
            kind: DeviceKind::Gate,
            driver,
            status: DeviceStatus::Online,
            num_qubits,
            timing: Timing::default(),
            config: serde_json::json!({}),
        }
    }
}

/// Change a device (admin); `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UpdateDevice {
    pub status: Option<DeviceStatus>,
    pub timing: Option<Timing>,
    pub config: Option<serde_json::Value>,
}

impl UpdateDevice {
    pub fn status(status: DeviceStatus) -> Self {
        UpdateDevice { status: Some(status), ..UpdateDevice::default() }
    }
}

/// A device as everyone sees it. An agent device's status is the one the scheduler goes by (its
/// agent's too), and what its agent reported feeds the views: `target` and `pulser_device` go
/// into the config (the IBM facade's configuration / properties and the Pasqal facade's specs
/// read them there) and the target's qubit count is the device's.
fn device_view(d: Device, queue_length: i64, held_by_session: Option<Uuid>) -> DeviceView {
    let status = d.effective_status();
    let mut config = d.config;
    let mut num_qubits = d.num_qubits;
    let agent = (d.driver == DriverKind::Agent).then(|| {
        let report = d.agent_report.unwrap_or_default();
        if let Some(obj) = config.as_object_mut() {
            for key in ["target", "pulser_device"] {
                if let Some(v) = report.get(key).filter(|v| v.is_object()) {
                    obj.insert(key.to_string(), v.clone());
                }
            }
        }
        if let Some(n) = report.pointer("/target/num_qubits").and_then(|n| n.as_i64()) {
            num_qubits = n.clamp(0, i32::MAX as i64) as i32;
        }
        AgentState {
            connected: d.agent_connected,
            status: d.agent_status,
            last_seen_at: d.agent_seen_at,
            message: report.get("message").and_then(|m| m.as_str()).map(str::to_owned),
            calibration: report.get("calibration").filter(|c| !c.is_null()).cloned(),
        }
    });
    DeviceView {
        name: d.name,
        kind: d.kind,
        driver: d.driver,
        status,
        num_qubits,
        timing: d.timing,
        config,
        queue_length,
        held_by_session,
        created_at: d.created_at,
        updated_at: d.updated_at,
        agent,
    }
}

/// `who` None: the full view (admin commands that have no caller).
fn overview_view(o: DeviceOverview, who: Option<&Principal>) -> DeviceView {
    let visible = match who {
        None => true,
        Some(p) => p.admin || o.held_by_project.as_deref() == Some(p.project.as_str()),
    };
    device_view(o.device, o.queued_jobs, o.held_by.filter(|_| visible))
}

impl Service {
    /// The devices, as `who` may see them.
    pub async fn list_devices(&self, who: &Principal) -> Result<Vec<DeviceView>> {
        let mut conn = self.pool.acquire().await?;
        Ok(qcloud_store::devices::list(&mut conn).await?.into_iter().map(|o| overview_view(o, Some(who))).collect())
    }

    /// One device, as `who` may see it.
    pub async fn get_device(&self, who: &Principal, name: &str) -> Result<DeviceView> {
        self.device_overview(name, Some(who)).await
    }

    async fn device_overview(&self, name: &str, who: Option<&Principal>) -> Result<DeviceView> {
        validate::text("name", name)?;
        let mut conn = self.pool.acquire().await?;
        let o = qcloud_store::devices::overview(&mut conn, name)
            .await?
            .ok_or_else(|| ServiceError::not_found("device", name))?;
        Ok(overview_view(o, who))
    }

    #[instrument(skip_all, fields(device = %cmd.name))]
    pub async fn add_device(&self, cmd: AddDevice) -> Result<DeviceView> {
        validate::device_name(&cmd.name)?;
        validate::num_qubits(cmd.num_qubits)?;
        validate::timing_values(&cmd.timing)?;
        validate::device_config(&cmd.config)?;
        let mut conn = self.pool.acquire().await?;
        let row = qcloud_store::devices::insert(
            &mut conn,
            NewDevice {
                name: &cmd.name,
                kind: cmd.kind,
                driver: cmd.driver,
                status: cmd.status,
                num_qubits: cmd.num_qubits,
                timing: cmd.timing,
                config: &cmd.config,
            },
        )
        .await?
        .ok_or_else(|| ServiceError::conflict("device_exists", format!("device '{}' already exists", cmd.name)))?;
        Ok(device_view(row, 0, None))
    }

    #[instrument(skip_all, fields(device = %name))]
    pub async fn update_device(&self, name: &str, cmd: UpdateDevice) -> Result<DeviceView> {
        validate::text("name", name)?;
        if let Some(t) = &cmd.timing {
            validate::timing_values(t)?;
        }
        if let Some(c) = &cmd.config {
            validate::device_config(c)?;
        }
        let mut tx = self.pool.begin().await?;
        qcloud_store::devices::update(&mut tx, name, cmd.status, cmd.timing, cmd.config.as_ref())
            .await?
            .ok_or_else(|| ServiceError::not_found("device", name))?;
        // A resumed device may have work waiting.
        qcloud_store::notify(&mut tx, qcloud_store::channel::WAKE, name).await?;
        tx.commit().await?;
        // Admin only: the full view.
        self.device_overview(name, None).await
    }
}
