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

/// The occupancy model of a device: how long the device is busy for one job, on top of the
/// work the driver does. Zero for plain simulators; a QPU emulation sets e.g. a setup time and a
/// per-shot time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Fixed time per job, in milliseconds.
    #[serde(default)]
    pub setup_ms: f64,
    /// Time per shot, in milliseconds.
    #[serde(default)]
    pub per_shot_ms: f64,
}

impl Timing {
    /// Device occupancy for a job of `shots` shots, in milliseconds.
    pub fn occupancy_ms(&self, shots: u64) -> f64 {
        (self.setup_ms + self.per_shot_ms * shots as f64).max(0.0)
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [("setup_ms", self.setup_ms), ("per_shot_ms", self.per_shot_ms)] {
            if !v.is_finite() || !(0.0..=86_400_000.0).contains(&v) {
                return Err(format!("timing.{name} must be between 0 and 86400000 ms, got {v}"));
            }
        }
        Ok(())
    }
}
