//! The domain vocabulary: devices, sessions, jobs and their enumerations. The job and session
//! state machines live in [`crate::states`] and are re-exported here.

use serde::{Deserialize, Serialize};

pub use crate::states::{JobStatus, SessionState};

/// Declares a string-backed enum with `as_str`, `FromStr`, `Display` and serde in snake_case.
/// Variants may carry doc comments.
macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = crate::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(crate::UnknownValue {
                        kind: stringify!($name),
                        value: other.to_string(),
                        expected: &[$($s),+],
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}
// `states.rs` declares its enums with it too.
pub(crate) use string_enum;

string_enum!(
    /// Gate-model or analog (neutral atoms) device.
    DeviceKind { Gate => "gate", Analog => "analog" }
);
string_enum!(
    /// Which driver runs the device's jobs.
    DriverKind { Noop => "noop", Statevector => "statevector", Analog => "analog", Agent => "agent" }
);
string_enum!(
    /// Whether a device takes new assignments (rule 11: paused and offline devices do not).
    DeviceStatus { Online => "online", Paused => "paused", Offline => "offline" }
);
string_enum!(
    /// IBM Session (`dedicated`), IBM Batch and Pasqal batches (`batch`).
    SessionMode { Dedicated => "dedicated", Batch => "batch" }
);
string_enum!(
    /// Why a session closed.
    ClosedReason {
        Completed => "completed",
        Canceled => "canceled",
        MaxTtl => "max_ttl",
        IdleTimeout => "idle_timeout",
        Failed => "failed",
    }
);
string_enum!(
    /// What an active session does when its interactive TTL runs out with no job (rule 4).
    IdlePolicy { Deactivate => "deactivate", TimeOut => "time_out" }
);
string_enum!(
    /// Scheduling priority (rule 3): high before medium before low.
    Priority { Low => "low", Medium => "medium", High => "high" }
);

impl DriverKind {
    /// The programs a driver runs (`None`: any, the agent forwards whatever its hardware takes).
    pub fn programs(self) -> Option<&'static [&'static str]> {
        match self {
            DriverKind::Noop => Some(&["noop"]),
            DriverKind::Statevector => Some(&["sampler", "estimator"]),
            DriverKind::Analog => Some(&["pulser"]),
            DriverKind::Agent => None,
        }
    }

    pub fn accepts_program(self, program: &str) -> bool {
        self.programs().is_none_or(|p| p.contains(&program))
    }
}

impl DeviceStatus {
    /// The status a device schedules by (rule 11): the operator's status, and for an agent device
    /// also its agent's. An agent device takes assignments only while its agent is connected
    /// (heard from within the server's `agent_offline_after`) and reports itself online; one whose
    /// agent never reported is offline.
    pub fn effective(self, driver: DriverKind, agent_connected: bool, agent: Option<DeviceStatus>) -> DeviceStatus {
        if driver != DriverKind::Agent || self != DeviceStatus::Online {
            return self;
        }
        if !agent_connected {
            return DeviceStatus::Offline;
        }
        agent.unwrap_or(DeviceStatus::Offline)
    }
}

impl Priority {
    /// Numeric rank stored in the database: larger runs first.
    pub fn rank(self) -> i16 {
        match self {
            Priority::Low => 0,
            Priority::Medium => 1,
            Priority::High => 2,
        }
    }

    pub fn from_rank(rank: i16) -> Priority {
        match rank {
            i16::MIN..=0 => Priority::Low,
            1 => Priority::Medium,
            _ => Priority::High,
        }
    }
}

// The macro owns the derive list, so Default is written out.
#[allow(clippy::derivable_impls)]
impl Default for Priority {
    fn default() -> Self {
        Priority::Medium
    }
}

/// The time model of a device: how long the device is busy for one job, on top of the work the
/// driver does, and how long a job's classical preparation (validation, compilation, loading)
/// takes before it. Zero for plain simulators; a QPU emulation sets e.g. a setup time and a
/// per-shot time, and a preparation time per job and per circuit. Preparation is spent on the
/// worker pool, not on the device: ahead of time for `batch` sessions (overlapping the device
/// time of earlier jobs), just in time for the others (the device waits).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Fixed time per job, in milliseconds.
    #[serde(default)]
    pub setup_ms: f64,
    /// Time per shot, in milliseconds.
    #[serde(default)]
    pub per_shot_ms: f64,
    /// Classical preparation per job, in milliseconds (left out of the JSON when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prep_ms: f64,
    /// Classical preparation per circuit (pub) of a job, in milliseconds (left out when 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub prep_per_circuit_ms: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Timing {
    /// Device occupancy for a job of `shots` shots, in milliseconds.
    pub fn occupancy_ms(&self, shots: u64) -> f64 {
        (self.setup_ms + self.per_shot_ms * shots as f64).max(0.0)
    }

    /// Classical preparation of a job of `circuits` circuits, in milliseconds.
    pub fn preparation_ms(&self, circuits: u64) -> f64 {
        (self.prep_ms + self.prep_per_circuit_ms * circuits as f64).max(0.0)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("setup_ms", self.setup_ms),
            ("per_shot_ms", self.per_shot_ms),
            ("prep_ms", self.prep_ms),
            ("prep_per_circuit_ms", self.prep_per_circuit_ms),
        ] {
            if !v.is_finite() || !(0.0..=86_400_000.0).contains(&v) {
                return Err(format!("timing.{name} must be between 0 and 86400000 ms, got {v}"));
            }
        }
        Ok(())
    }
}

/// What the time model predicts for `jobs` jobs of `circuits` circuits and `shots` shots each,
/// run back to back on one device by one session, in milliseconds, not counting the scheduler's
/// own overhead (DESIGN rule 12). A `dedicated` session (or job mode) prepares each job just in
/// time, so every job costs its preparation plus its occupancy. In a `batch`, when a job is
/// taken up (the device is free) and fewer than `window / 2` of the session's jobs are prepared
/// or under way, the next `window` queued jobs start preparing at once, in parallel; the job
/// itself is prepared just in time unless it was prepared ahead, and starts on the device when
/// it is prepared.
pub fn predicted_wall_ms(timing: &Timing, batch: bool, jobs: u64, circuits: u64, shots: u64, window: u64) -> f64 {
    let prep = timing.preparation_ms(circuits);
    let run = timing.occupancy_ms(shots);
    if !batch || window == 0 {
        return jobs as f64 * (prep + run);
    }
    let jobs = jobs as usize;
    let mut ready = vec![f64::INFINITY; jobs];
    // Jobs below this index have had their preparation started.
    let mut started_upto = 0usize;
    let mut device_free = 0.0f64;
    for k in 0..jobs {
        let taken = device_free;
        let in_cache = started_upto.saturating_sub(k);
        if (in_cache as u64) < window / 2 {
            let from = started_upto.max(k + 1);
            let end = (k + 1 + window as usize).min(jobs);
            for r in ready.iter_mut().take(end).skip(from) {
                *r = taken + prep;
            }
            started_upto = started_upto.max(end);
        }
        if ready[k].is_infinite() {
            ready[k] = taken + prep;
        }
        device_free = ready[k].max(taken) + run;
    }
    device_free
}

#[cfg(test)]
mod timing_tests {
    use super::*;

    #[test]
    fn a_batch_hides_preparation_behind_device_time_and_a_session_does_not() {
        let t = Timing { setup_ms: 50.0, prep_ms: 100.0, ..Timing::default() };
        assert_eq!(predicted_wall_ms(&t, false, 50, 1, 0, 16), 50.0 * 150.0);
        // The first job's preparation is visible; later ones overlap the device.
        assert_eq!(predicted_wall_ms(&t, true, 50, 1, 0, 16), 100.0 + 50.0 * 50.0);
        // Without a look-ahead window a batch is a session.
        assert_eq!(predicted_wall_ms(&t, true, 50, 1, 0, 0), 50.0 * 150.0);
        // Preparation slower than the device: waves of `window` preparations.
        let slow = Timing { setup_ms: 10.0, prep_ms: 1000.0, ..Timing::default() };
        let w = predicted_wall_ms(&slow, true, 8, 1, 0, 4);
        assert!(w > 2000.0 && w < 8.0 * 1010.0, "{w}");
        let no_prep = Timing { setup_ms: 5.0, per_shot_ms: 0.5, ..Timing::default() };
        assert_eq!(predicted_wall_ms(&no_prep, true, 4, 3, 10, 16), predicted_wall_ms(&no_prep, false, 4, 3, 10, 16));
        assert_eq!(Timing { prep_ms: 150.0, prep_per_circuit_ms: 20.0, ..t }.preparation_ms(10), 350.0);
    }

    #[test]
    fn preparation_times_are_validated() {
        assert!(Timing { prep_ms: -1.0, ..Timing::default() }.validate().unwrap_err().contains("timing.prep_ms"));
        let e = Timing { prep_per_circuit_ms: f64::NAN, ..Timing::default() }.validate().unwrap_err();
        assert!(e.contains("timing.prep_per_circuit_ms"), "{e}");
        let t: Timing = serde_json::from_value(serde_json::json!({"prep_ms": 100, "setup_ms": 50})).unwrap();
        assert_eq!((t.prep_ms, t.prep_per_circuit_ms, t.setup_ms), (100.0, 0.0, 50.0));
    }
}

#[cfg(test)]
mod agent_status_tests {
    use super::*;

    #[test]
    fn an_agent_device_takes_jobs_only_while_its_agent_is_connected_and_online() {
        use DeviceStatus::*;
        let a = DriverKind::Agent;
        assert_eq!(Online.effective(a, true, Some(Online)), Online);
        assert_eq!(Online.effective(a, false, Some(Online)), Offline, "agent gone");
        assert_eq!(Online.effective(a, true, None), Offline, "agent never reported");
        assert_eq!(Online.effective(a, true, Some(Paused)), Paused, "calibrating");
        assert_eq!(Paused.effective(a, true, Some(Online)), Paused, "the operator's pause holds");
        assert_eq!(Online.effective(DriverKind::Noop, false, None), Online, "other drivers: the operator's status");
    }
}
