//! Devices.

use crate::enum_col;
use chrono::{DateTime, Utc};
use qcloud_core::{DeviceKind, DeviceStatus, DriverKind, Timing};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, Row};
use uuid::Uuid;

/// A device as stored.
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub kind: DeviceKind,
    pub driver: DriverKind,
    pub status: DeviceStatus,
    pub num_qubits: i32,
    pub timing: Timing,
    pub config: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// What the device's agent last reported of its status (agent devices).
    pub agent_status: Option<DeviceStatus>,
    /// Whether the agent was heard from within `agent_offline_after`.
    pub agent_connected: bool,
    pub agent_seen_at: Option<DateTime<Utc>>,
    /// The agent's last report (target, Pulser device spec, calibration).
    pub agent_report: Option<serde_json::Value>,
}

impl Device {
    /// The status the scheduler goes by (rule 11; see [`DeviceStatus::effective`]).
    pub fn effective_status(&self) -> DeviceStatus {
        self.status.effective(self.driver, self.agent_connected, self.agent_status)
    }
}

impl<'r> FromRow<'r, PgRow> for Device {
    fn from_row(row: &'r PgRow) -> sqlx::Result<Self> {
        Device::from_columns(row, "")
    }
}

/// The columns of `devices` with a prefix, for queries that return a device beside another row
/// (see [`DEVICE_COLUMNS`]).
pub(crate) const DEVICE_PREFIX: &str = "device_";

/// `devices d` as prefixed columns, to select beside another table's `*`.
pub(crate) const DEVICE_COLUMNS: &str = "d.name AS device_name, d.kind AS device_kind, d.driver AS device_driver,
    d.status AS device_status, d.num_qubits AS device_num_qubits, d.timing AS device_timing,
    d.config AS device_config, d.created_at AS device_created_at, d.updated_at AS device_updated_at,
    d.agent_status AS device_agent_status, d.agent_connected AS device_agent_connected,
    d.agent_seen_at AS device_agent_seen_at, d.agent_report AS device_agent_report";

impl Device {
    /// A device from its columns, each named `prefix` + the column name.
    pub(crate) fn from_columns(row: &PgRow, prefix: &str) -> sqlx::Result<Self> {
        let col = |c: &str| format!("{prefix}{c}");
        let timing: Json<Timing> = row.try_get(col("timing").as_str())?;
        Ok(Device {
            name: row.try_get(col("name").as_str())?,
            kind: enum_col(row, &col("kind"))?,
            driver: enum_col(row, &col("driver"))?,
            status: enum_col(row, &col("status"))?,
            num_qubits: row.try_get(col("num_qubits").as_str())?,
            timing: timing.0,
            config: row.try_get::<Json<serde_json::Value>, _>(col("config").as_str())?.0,
            created_at: row.try_get(col("created_at").as_str())?,
            updated_at: row.try_get(col("updated_at").as_str())?,
            agent_status: crate::opt_enum_col(row, &col("agent_status"))?,
            agent_connected: row.try_get(col("agent_connected").as_str())?,
            agent_seen_at: row.try_get(col("agent_seen_at").as_str())?,
            agent_report: row.try_get::<Option<Json<serde_json::Value>>, _>(col("agent_report").as_str())?.map(|j| j.0),
        })
    }
}

/// A device with its queue length and holding session, for listings.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceOverview {
    #[sqlx(flatten)]
    pub device: Device,
    pub queued_jobs: i64,
    pub held_by: Option<Uuid>,
    /// The project of the session in `held_by`.
    pub held_by_project: Option<String>,
}

const OVERVIEW: &str = "SELECT d.*,
        (SELECT count(*) FROM job_queue q WHERE q.device = d.name) AS queued_jobs,
        h.id AS held_by, h.project AS held_by_project
    FROM devices d
    LEFT JOIN LATERAL (SELECT s.id, s.project FROM sessions s WHERE s.device = d.name AND s.state = 'active' LIMIT 1) h
        ON true";

pub async fn list(conn: &mut PgConnection) -> sqlx::Result<Vec<DeviceOverview>> {
    sqlx::query_as(&format!("{OVERVIEW} ORDER BY d.name")).fetch_all(conn).await
}

pub async fn overview(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<DeviceOverview>> {
    sqlx::query_as(&format!("{OVERVIEW} WHERE d.name = $1")).bind(name).fetch_optional(conn).await
}

pub async fn get(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<Device>> {
    sqlx::query_as("SELECT * FROM devices WHERE name = $1").bind(name).fetch_optional(conn).await
}

/// A device with the quota of `project` (device seconds; `None` when unlimited), in one query.
pub async fn get_with_quota(
    conn: &mut PgConnection,
    name: &str,
    project: &str,
) -> sqlx::Result<Option<(Device, Option<f64>)>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        device: Device,
        quota_seconds: Option<f64>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT d.*, p.quota_seconds FROM devices d LEFT JOIN projects p ON p.name = $2 WHERE d.name = $1",
    )
    .bind(name)
    .bind(project)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.device, r.quota_seconds)))
}

/// Lock the device row: every dispatch of a device holds this lock, so dispatches of one device
/// are serial while different devices dispatch in parallel.
pub async fn lock(conn: &mut PgConnection, name: &str) -> sqlx::Result<Option<Device>> {
    sqlx::query_as("SELECT * FROM devices WHERE name = $1 FOR NO KEY UPDATE").bind(name).fetch_optional(conn).await
}

pub struct NewDevice<'a> {
    pub name: &'a str,
    pub kind: DeviceKind,
    pub driver: DriverKind,
    pub status: DeviceStatus,
    pub num_qubits: i32,
    pub timing: Timing,
    pub config: &'a serde_json::Value,
}

/// Insert a device; `None` when the name is taken.
pub async fn insert(conn: &mut PgConnection, d: NewDevice<'_>) -> sqlx::Result<Option<Device>> {
    sqlx::query_as(
        "INSERT INTO devices (name, kind, driver, status, num_qubits, timing, config)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING RETURNING *",
    )
    .bind(d.name)
    .bind(d.kind.as_str())
    .bind(d.driver.as_str())
    .bind(d.status.as_str())
    .bind(d.num_qubits)
    .bind(Json(d.timing))
    .bind(Json(d.config))
    .fetch_optional(conn)
    .await
}

pub async fn update(
    conn: &mut PgConnection,
    name: &str,
    status: Option<DeviceStatus>,
    timing: Option<Timing>,
    config: Option<&serde_json::Value>,
) -> sqlx::Result<Option<Device>> {
    sqlx::query_as(
        "UPDATE devices SET status = COALESCE($2, status), timing = COALESCE($3, timing),
                config = COALESCE($4, config), updated_at = now()
         WHERE name = $1 RETURNING *",
    )
    .bind(name)
    .bind(status.map(DeviceStatus::as_str))
    .bind(timing.map(Json))
    .bind(config.map(Json))
    .fetch_optional(conn)
    .await
}

/// Online devices with no running job and something queued: the leader's periodic sweep.
pub async fn with_pending_work(conn: &mut PgConnection) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT d.name FROM devices d
         WHERE d.status = 'online'
           AND (d.driver <> 'agent' OR (d.agent_connected AND d.agent_status = 'online'))
           AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.device = d.name AND r.status = 'running')
           AND EXISTS (SELECT 1 FROM job_queue q WHERE q.device = d.name)",
    )
    .fetch_all(conn)
    .await
}

/// Device seconds per project over the fair-share window.
pub async fn recent_usage(
    conn: &mut PgConnection,
    device: &str,
    projects: &[String],
    window_s: f64,
) -> sqlx::Result<Vec<(String, f64)>> {
    sqlx::query_as(
        "SELECT project, SUM(seconds)::float8 FROM device_usage
         WHERE device = $1 AND project = ANY($2) AND bucket >= now() - make_interval(secs => $3)
         GROUP BY project",
    )
    .bind(device)
    .bind(projects)
    .bind(window_s)
    .fetch_all(conn)
    .await
}
