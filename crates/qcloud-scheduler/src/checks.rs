//! The submit-time checks of the service (`qcloud_service::checks`) over the driver registry: a
//! job's payload is put through its device driver's `validate` step before it is accepted.

use crate::worker::device_spec;
use qcloud_devices::{DriverError, JobSpec, Registry};
use qcloud_service::checks::{CheckError, Checked, ProgramCheck};
use qcloud_service::pipeline::Device;
use uuid::Uuid;

/// Checks payloads with the drivers of `registry`.
pub struct DriverChecks {
    registry: Registry,
}

impl DriverChecks {
    pub fn new(registry: Registry) -> Self {
        DriverChecks { registry }
    }
}

impl ProgramCheck for DriverChecks {
    fn check(
        &self,
        device: &Device,
        program: &str,
        payload: &serde_json::Value,
        shots: Option<i64>,
    ) -> Result<Checked, CheckError> {
        // A driver this build does not have (agent devices before their driver exists) checks
        // nothing here; the job fails when it runs, as before.
        let Some(driver) = self.registry.get(device.driver) else { return Ok(Checked::default()) };
        let spec = JobSpec {
            id: Uuid::nil(),
            program: program.to_owned(),
            payload: payload.clone(),
            shots: shots.map(|s| s.max(0) as u64),
            device: device_spec(device),
        };
        match driver.validate(&spec) {
            Ok(v) => match self.registry.memory_budget().refusal(v.memory_bytes) {
                Some(why) => Err(CheckError::TooLarge(why)),
                None => Ok(Checked { shots: v.shots.map(|s| s.min(i64::MAX as u64) as i64) }),
            },
            Err(DriverError::Invalid(m)) => Err(CheckError::Invalid(m)),
            Err(DriverError::TooLarge(m)) => Err(CheckError::TooLarge(m)),
            Err(DriverError::Fault(m)) => Err(CheckError::Fault(m)),
            Err(DriverError::Canceled) => Err(CheckError::Fault("the check was canceled".into())),
        }
    }
}
