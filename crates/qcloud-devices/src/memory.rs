//! The server-wide memory budget of simulations (issue 7): every job that allocates a state vector
//! (statevector, analog) reserves its bytes here before it runs and gives them back when it ends,
//! so that jobs on different devices of one replica cannot together exhaust the machine. A job
//! that needs more than the whole budget is refused at submit (`too_large`); one that needs more
//! than is free now waits (its device stays held; a cancel or its maximum execution time still
//! stops it), never an out-of-memory kill.

use crate::DriverError;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Reservations are counted in MiB (the semaphore counts u32 permits).
const UNIT: u64 = 1 << 20;

/// A budget of bytes shared by the jobs of one replica.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    total_bytes: u64,
    units: Arc<Semaphore>,
}

/// A reservation; the bytes return to the budget when it is dropped.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// A budget of `total_bytes` (rounded down to whole MiB, at least 1 MiB).
    pub fn new(total_bytes: u64) -> Self {
        let units = (total_bytes / UNIT).clamp(1, u32::MAX as u64);
        MemoryBudget { total_bytes: units * UNIT, units: Arc::new(Semaphore::new(units as usize)) }
    }

    /// The default budget: half of the machine's memory (`MemTotal` of `/proc/meminfo`), or 8 GiB
    /// where that cannot be read.
    pub fn machine_default_bytes() -> u64 {
        let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| mem_total_bytes(&t));
        total.map(|b| b / 2).unwrap_or(8 << 30)
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Bytes not reserved right now.
    pub fn free_bytes(&self) -> u64 {
        self.units.available_permits() as u64 * UNIT
    }

    /// Whether a job of `bytes` can ever run under this budget.
    pub fn admits(&self, bytes: u64) -> bool {
        units(bytes) as u64 * UNIT <= self.total_bytes
    }

    /// The reason a job of `bytes` is refused, if it is.
    pub fn refusal(&self, bytes: u64) -> Option<String> {
        (!self.admits(bytes)).then(|| {
            format!(
                "the job needs {} of memory for its state, more than the server's simulation memory budget of {} \
                 (sim_memory_budget)",
                human(bytes),
                human(self.total_bytes)
            )
        })
    }

    /// Reserve `bytes`, waiting while other jobs hold the budget; stops waiting when `cancel`
    /// fires. Zero bytes reserve nothing.
    pub async fn reserve(&self, bytes: u64, cancel: &CancellationToken) -> Result<Reservation, DriverError> {
        if bytes == 0 {
            return Ok(Reservation { _permit: None });
        }
        if let Some(why) = self.refusal(bytes) {
            return Err(DriverError::TooLarge(why));
        }
        let wanted = units(bytes);
        tokio::select! {
            p = self.units.clone().acquire_many_owned(wanted) => {
                let permit = p.map_err(|_| DriverError::Fault("the memory budget was closed".into()))?;
                Ok(Reservation { _permit: Some(permit) })
            }
            _ = cancel.cancelled() => Err(DriverError::Canceled),
        }
    }
}

fn units(bytes: u64) -> u32 {
    bytes.div_ceil(UNIT).clamp(1, u32::MAX as u64) as u32
}

fn mem_total_bytes(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes for people: `512 MiB`, `4.0 GiB`.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes.div_ceil(UNIT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reads_mem_total() {
        let text = "MemTotal:       24589064 kB\nMemFree:        1000 kB\n";
        assert_eq!(mem_total_bytes(text), Some(24_589_064 * 1024));
        assert_eq!(mem_total_bytes("nothing"), None);
        assert!(MemoryBudget::machine_default_bytes() > 0);
    }

    #[test]
    fn refuses_what_can_never_fit() {
        let b = MemoryBudget::new(1 << 30);
        assert!(b.admits(1 << 30));
        assert!(!b.admits((1 << 30) + 1));
        let why = b.refusal(4 << 30).unwrap();
        assert!(why.contains("4.0 GiB") && why.contains("1.0 GiB"), "{why}");
    }

    #[tokio::test]
    async fn a_second_job_waits_until_the_first_gives_its_memory_back() {
        let b = MemoryBudget::new(100 * UNIT);
        let never = CancellationToken::new();
        let first = b.reserve(60 * UNIT, &never).await.unwrap();
        assert_eq!(b.free_bytes(), 40 * UNIT);
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { b.reserve(60 * UNIT, &CancellationToken::new()).await.map(|_| ()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "60 + 60 MiB do not fit in 100");
        drop(first);
        waiting.await.unwrap().unwrap();
        assert_eq!(b.free_bytes(), 100 * UNIT, "the second reservation was dropped too");
    }

    #[tokio::test]
    async fn a_cancel_stops_the_wait() {
        let b = MemoryBudget::new(10 * UNIT);
        let held = b.reserve(10 * UNIT, &CancellationToken::new()).await.unwrap();
        let cancel = CancellationToken::new();
        cancel.cancel();
        assert_eq!(b.reserve(UNIT, &cancel).await.unwrap_err(), DriverError::Canceled);
        assert!(matches!(b.reserve(11 * UNIT, &cancel).await, Err(DriverError::TooLarge(_))));
        drop(held);
    }
}
