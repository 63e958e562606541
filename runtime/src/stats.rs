//! Counters a service can export, as a plain snapshot.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a pool's counters since it was built, plus the pool's live state
/// (from r2d2, or from the small pool a forked child uses).
///
/// ```
/// # fn main() -> Result<(), db_txn::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let url = dir.path().join("stats.db");
/// let pool = db_txn::Pool::<diesel::SqliteConnection>::builder(url.to_str().unwrap()).build()?;
/// let _conn = pool.get()?;
/// let s = pool.stats();
/// assert_eq!(s.checkouts, 1);
/// assert_eq!(s.connections, 1);
/// assert_eq!(s.idle_connections, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Connections handed out.
    pub checkouts: u64,
    /// Health checks (`SELECT 1`) sent at checkout.
    pub pings: u64,
    /// Checkouts that skipped the health check because the connection had
    /// just been used successfully and no disconnect had been seen since.
    pub pings_skipped: u64,
    /// Lost connections detected (at checkout, in a transaction, or at COMMIT).
    pub disconnects: u64,
    /// Transaction bodies run again after a lost connection or a conflict.
    pub retries: u64,
    /// Transactions rolled back (error or panic in the body).
    pub rollbacks: u64,
    /// COMMITs lost with their connection whose outcome stayed unknown: the
    /// caller got [`Error::CommitUnknown`](crate::Error::CommitUnknown)
    /// (commit resolution off, or it found nothing within its timeout).
    pub commit_unknowns: u64,
    /// COMMITs lost with their connection that commit resolution found
    /// committed: the caller got the body's value.
    pub lost_commits_committed: u64,
    /// COMMITs lost with their connection that commit resolution found not
    /// committed: the body ran again (counted in `retries` too), or the
    /// caller got [`Error::Disconnected`](crate::Error::Disconnected) when
    /// no retry was left.
    pub lost_commits_aborted: u64,
    /// Connections opened.
    pub opened: u64,
    /// Attempts to open a connection that failed: the server unreachable,
    /// refusing the login, or of the wrong role. While a server is down the
    /// pool tries again every 2 ms for the first second of the outage (on an
    /// async pool, its waiting checkouts take turns at that pace), so a
    /// restart shows here as a few dozen to a few hundred.
    pub connect_failures: u64,
    /// Connections closed (broken, recycled, or pool shrinking).
    pub closed: u64,
    /// Connections retired before the server's idle limit or `max_lifetime`.
    pub recycled: u64,
    /// Connections held longer than the leak-detection threshold.
    pub leaks: u64,
    /// Connections shut down by the watchdog because their statement got no
    /// answer (a frozen or unreachable server, a link that died silently).
    pub stalls_cut: u64,
    /// Connections found on a server of the wrong role and closed: a write
    /// refused as read-only, or a role check at checkout (see
    /// [`PoolBuilder::require_writable`](crate::PoolBuilder::require_writable),
    /// `AsyncPoolBuilder::require_writable` on an async pool).
    /// New connections to such a server are refused without counting here.
    pub role_mismatches: u64,
    /// `read_only` calls served by a replica (see
    /// [`PoolBuilder::replica`](crate::PoolBuilder::replica)).
    pub replica_reads: u64,
    /// `read_only` calls served by the primary of a pool with replicas: no
    /// replica answered, or none caught up with this thread's writes in time.
    pub primary_fallbacks: u64,
    /// Reads that waited for a replica to catch up with this thread's writes
    /// (read-your-writes), whether or not it did in time.
    pub replica_waits: u64,
    /// Connections open now.
    pub connections: u32,
    /// Idle connections now.
    pub idle_connections: u32,
}

/// The live counters behind [`PoolStats`]. `repr(C)`: the ones a checkout
/// bumps come first, on the line of the pool's epochs (see `Signals`).
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct Counters {
    pub pings_skipped: AtomicU64,
    /// Checkouts that were not judged without a ping: the others are
    /// `pings_skipped`, so that a call bumps one counter, not two (see
    /// [`Counters::checked_out`]).
    other_checkouts: AtomicU64,
    pub pings: AtomicU64,
    pub disconnects: AtomicU64,
    pub retries: AtomicU64,
    pub rollbacks: AtomicU64,
    pub commit_unknowns: AtomicU64,
    pub lost_commits_committed: AtomicU64,
    pub lost_commits_aborted: AtomicU64,
    pub opened: AtomicU64,
    pub closed: AtomicU64,
    pub recycled: AtomicU64,
    pub leaks: AtomicU64,
    pub stalls_cut: AtomicU64,
    pub role_mismatches: AtomicU64,
    pub replica_reads: AtomicU64,
    pub primary_fallbacks: AtomicU64,
    pub replica_waits: AtomicU64,
    pub connect_failures: AtomicU64,
}

impl Counters {
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// A connection was judged fit without a ping (`trusted` is its
    /// [`Tracked::trusted`](crate::pool::tracked::Tracked)): its checkout,
    /// which follows at once, is counted by this too.
    #[inline]
    pub(crate) fn ping_skipped(&self, trusted: &mut bool) {
        Self::bump(&self.pings_skipped);
        *trusted = true;
    }

    /// A connection was checked out: counted here unless its judgment
    /// already counted it ([`ping_skipped`](Self::ping_skipped)). A shared
    /// counter's increment is a locked instruction, on a cache line every
    /// thread writes: one per call instead of two.
    #[inline]
    pub(crate) fn checked_out(&self, trusted: &mut bool) {
        if !std::mem::take(trusted) {
            Self::bump(&self.other_checkouts);
        }
    }

    pub(crate) fn snapshot(&self, connections: u32, idle_connections: u32) -> PoolStats {
        let pings_skipped = self.pings_skipped.load(Relaxed);
        PoolStats {
            checkouts: pings_skipped + self.other_checkouts.load(Relaxed),
            pings: self.pings.load(Relaxed),
            pings_skipped,
            disconnects: self.disconnects.load(Relaxed),
            retries: self.retries.load(Relaxed),
            rollbacks: self.rollbacks.load(Relaxed),
            commit_unknowns: self.commit_unknowns.load(Relaxed),
            lost_commits_committed: self.lost_commits_committed.load(Relaxed),
            lost_commits_aborted: self.lost_commits_aborted.load(Relaxed),
            opened: self.opened.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            closed: self.closed.load(Relaxed),
            recycled: self.recycled.load(Relaxed),
            leaks: self.leaks.load(Relaxed),
            stalls_cut: self.stalls_cut.load(Relaxed),
            role_mismatches: self.role_mismatches.load(Relaxed),
            replica_reads: self.replica_reads.load(Relaxed),
            primary_fallbacks: self.primary_fallbacks.load(Relaxed),
            replica_waits: self.replica_waits.load(Relaxed),
            connections,
            idle_connections,
        }
    }
}
