//! State shared by every connection of one pool: the disconnect epoch and
//! the counters behind [`PoolStats`](crate::PoolStats).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::stats::Counters;

#[derive(Default)]
pub(crate) struct Signals {
    /// Bumped on every disconnect seen on the pool: a connection last known
    /// healthy in an older epoch is pinged at its next checkout.
    pub epoch: AtomicU64,
    pub counters: Counters,
}

impl Signals {
    pub(crate) fn disconnect_seen(&self) {
        self.epoch.fetch_add(1, Relaxed);
        Counters::bump(&self.counters.disconnects);
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }
}
