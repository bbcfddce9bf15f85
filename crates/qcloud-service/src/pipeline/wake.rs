//! Wake-ups: the notifications the service sends on commit (a device to look at, jobs to claim, a
//! job to stop), received through one LISTEN connection and handed to the scheduler as values.

use crate::error::Result;
use crate::Service;
use qcloud_store::{channel, PgListener};
use uuid::Uuid;

/// Something the scheduler should act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wakeup {
    /// Something changed on this device (a job arrived, a session closed, the device resumed):
    /// the leader should dispatch it.
    Device(String),
    /// Jobs were started without an owner: workers should claim them.
    Run,
    /// The user asked to stop this running job.
    Cancel(Uuid),
}

/// A stream of [`Wakeup`]s. Notifications sent while the connection was down are lost; the
/// scheduler's periodic tick covers them.
pub struct Wakeups {
    listener: PgListener,
}

impl Wakeups {
    /// The next wake-up. An error means the connection dropped; the next call reconnects.
    pub async fn recv(&mut self) -> Result<Wakeup> {
        loop {
            let n = self.listener.recv().await?;
            let wake = match n.channel() {
                channel::WAKE => Wakeup::Device(n.payload().to_string()),
                channel::RUN => Wakeup::Run,
                channel::CANCEL => match n.payload().parse() {
                    Ok(id) => Wakeup::Cancel(id),
                    Err(_) => continue,
                },
                _ => continue,
            };
            return Ok(wake);
        }
    }
}

impl Service {
    /// Listen for wake-ups (one dedicated database connection).
    pub async fn wakeups(&self) -> Result<Wakeups> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen_all([channel::WAKE, channel::RUN, channel::CANCEL]).await?;
        Ok(Wakeups { listener })
    }
}
