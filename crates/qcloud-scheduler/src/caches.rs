//! What one scheduler's workers remember between jobs: the jobs of batch sessions prepared ahead
//! of their turn (rule 12). Bounded; losing an entry only means preparing that job again.

use qcloud_devices::{DriverError, Prepared};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Most prepared jobs one replica keeps waiting.
const MAX_PREPARED: usize = 1024;

pub(crate) type PrepareSlot = oneshot::Receiver<Result<Prepared, DriverError>>;

#[derive(Default)]
pub(crate) struct Caches {
    /// Jobs prepared ahead: job id -> (session, the preparation under way or done).
    prepared: Mutex<HashMap<Uuid, (Uuid, PrepareSlot)>>,
}

impl Caches {
    /// The preparation of a job, if one was started ahead.
    pub(crate) async fn take_prepared(&self, id: Uuid) -> Option<Result<Prepared, DriverError>> {
        let slot = self.prepared.lock().ok()?.remove(&id)?.1;
        slot.await.ok()
    }

    /// How many jobs of a session are prepared or being prepared.
    pub(crate) fn prepared_in(&self, sid: Uuid) -> usize {
        self.prepared.lock().map(|c| c.values().filter(|(s, _)| *s == sid).count()).unwrap_or(usize::MAX)
    }

    pub(crate) fn contains(&self, id: Uuid) -> bool {
        self.prepared.lock().map(|c| c.contains_key(&id)).unwrap_or(true)
    }

    /// Remember a preparation started for job `id` of session `sid`.
    pub(crate) fn insert(&self, id: Uuid, sid: Uuid, slot: PrepareSlot) {
        if let Ok(mut cache) = self.prepared.lock() {
            if cache.len() >= MAX_PREPARED {
                cache.clear();
            }
            cache.insert(id, (sid, slot));
        }
    }
}
