//! State shared by every connection of one pool: the disconnect epoch, the
//! moment a link was last cut, the warnings already given, and the counters
//! behind [`PoolStats`](crate::PoolStats).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use super::clock::{self, Ms};
use super::fault::Faults;
use crate::stats::Counters;

/// `repr(C)`, aligned to a cache line: the three epochs a checkout reads
/// and the counter it bumps (the first of `counters`) share one line.
#[repr(C, align(64))]
pub(crate) struct Signals {
    /// Bumped on every disconnect seen on the pool: a connection last known
    /// healthy in an older epoch is pinged at its next checkout.
    pub epoch: AtomicU64,
    /// Bumped when a write was refused as read-only: a connection whose role
    /// was last checked in an older role epoch has it checked again.
    role_epoch: AtomicU64,
    /// When the watchdog last shut down a link
    /// that stopped answering (0: never). Idle connections last known
    /// healthy before then are retired without a ping: their path is
    /// suspect, and a ping on a dead path would hang.
    distrust: AtomicU64,
    pub counters: Counters,
    warned: AtomicU8,
    /// A retry-safety check running on the pool.
    pub faults: Faults,
}

/// Conditions logged once per pool.
#[derive(Debug, Clone, Copy)]
#[repr(u8)]
pub(crate) enum Warning {
    /// A connection's socket could not be identified.
    NoSocket = 1,
    /// A connection has no server session id.
    NoSessionId = 2,
    /// The server refuses the liveness probe.
    ProbeRefused = 4,
    /// TCP keepalive could not be set.
    NoKeepalive = 8,
    /// The primary reports no replication position (read-your-writes).
    NoPosition = 16,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            epoch: AtomicU64::new(0),
            role_epoch: AtomicU64::new(0),
            distrust: AtomicU64::new(0),
            warned: AtomicU8::new(0),
            counters: Counters::default(),
            faults: Faults::default(),
        }
    }
}

impl Signals {
    pub(crate) fn disconnect_seen(&self) {
        self.epoch.fetch_add(1, Relaxed);
        Counters::bump(&self.counters.disconnects);
    }

    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }

    /// A write was refused as read-only: the server's role changed.
    pub(crate) fn role_changed(&self) {
        self.role_epoch.fetch_add(1, Relaxed);
        Counters::bump(&self.counters.role_mismatches);
    }

    #[inline]
    pub(crate) fn role_epoch(&self) -> u64 {
        self.role_epoch.load(Relaxed)
    }

    /// The watchdog shut a link down.
    pub(crate) fn link_cut(&self) {
        self.distrust.store(clock::now().0, Relaxed);
        Counters::bump(&self.counters.stalls_cut);
    }

    /// A call lost its connection and runs again: connections idle since
    /// before are retired at their next checkout instead of pinged. A
    /// server that crashes or restarts takes its sessions down one by one,
    /// so a ping just after the loss can still find one alive that dies at
    /// the retry's first statement (seen in a failover: the retry, the
    /// call's last attempt, lost too); the retry then runs on a connection
    /// opened after the loss. After the KILL of a single session this
    /// costs reconnects for idle connections that were healthy.
    pub(crate) fn call_lost_its_connection(&self) {
        self.distrust.store(clock::now().0, Relaxed);
    }

    /// A connection last known healthy at `last_ok` predates a cut link or
    /// a connection lost by a call (see `call_lost_its_connection`).
    #[inline]
    pub(crate) fn distrusts(&self, last_ok: Ms) -> bool {
        // A coarse clock: a connection used in the same millisecond as the
        // cut is distrusted too, which only costs a reconnect.
        last_ok.0 <= self.distrust.load(Relaxed)
    }

    /// Log `message` at WARN, the first time only.
    pub(crate) fn warn_once(&self, what: Warning, message: &'static str) {
        let bit = what as u8;
        if self.warned.fetch_or(bit, Relaxed) & bit == 0 {
            tracing::warn!(target: "db_txn", "{message}");
        }
    }
}
