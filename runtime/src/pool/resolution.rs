//! What a pool knows for resolving lost COMMITs (`runner/commit.rs`): its
//! settings, whether its marker table is there (MariaDB/MySQL), and the
//! markers waiting to be deleted.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Markers deleted together, in one statement after a COMMIT: one round
/// trip per this many transactions.
pub(crate) const FORGET_BATCH: usize = 256;

/// After a failed attempt to create the marker table, try again this much
/// later (someone may have run the migration).
const RECHECK: Duration = Duration::from_secs(60);

/// The pool's settings and state.
pub(crate) struct Resolution {
    /// The pool default (a function's `resolve_commit = ...` overrides it).
    pub on: bool,
    /// How long a resolution may take before giving up with `CommitUnknown`.
    pub timeout: Duration,
    /// [`Table`] as a number.
    table: AtomicU8,
    /// When the table was last found missing (nanoseconds after `origin`).
    failed_at: AtomicU64,
    origin: Instant,
    warned: AtomicBool,
    /// Markers of committed transactions, deleted in batches.
    pending: Mutex<Vec<i64>>,
}

/// Whether the marker table can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    /// Not checked yet (or again).
    Unknown,
    /// There.
    Ready,
    /// Could not be created; checked again later.
    Missing,
}

impl Resolution {
    pub(crate) fn new(on: bool, timeout: Duration) -> Self {
        Resolution {
            on,
            timeout,
            table: AtomicU8::new(0),
            failed_at: AtomicU64::new(0),
            origin: Instant::now(),
            warned: AtomicBool::new(false),
            pending: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn table(&self) -> Table {
        match self.table.load(Relaxed) {
            1 => Table::Ready,
            2 if self.since(self.failed_at.load(Relaxed)) < RECHECK => Table::Missing,
            _ => Table::Unknown,
        }
    }

    pub(crate) fn set_table(&self, t: Table) {
        if t == Table::Missing {
            let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.failed_at.store(now, Relaxed);
        }
        self.table.store(
            match t {
                Table::Unknown => 0,
                Table::Ready => 1,
                Table::Missing => 2,
            },
            Relaxed,
        );
    }

    fn since(&self, nanos: u64) -> Duration {
        self.origin
            .elapsed()
            .saturating_sub(Duration::from_nanos(nanos))
    }

    /// True the first time only.
    pub(crate) fn first_warning(&self) -> bool {
        !self.warned.swap(true, Relaxed)
    }

    /// Marker `id` is no longer needed; returns a batch to delete when one is
    /// full.
    pub(crate) fn done(&self, id: i64) -> Option<Vec<i64>> {
        let mut pending = self.pending()?;
        pending.push(id);
        (pending.len() >= FORGET_BATCH).then(|| std::mem::take(&mut *pending))
    }

    /// Marker `id` is no longer needed: deleted with the next batch.
    pub(crate) fn forget_later(&self, id: i64) {
        if let Some(mut pending) = self.pending() {
            pending.push(id);
        }
    }

    /// The queue. In a forked child it is never waited for: a thread of the
    /// parent's may have held the lock at the fork, forever in the child,
    /// whose markers are then left to the stale clean-up.
    fn pending(&self) -> Option<MutexGuard<'_, Vec<i64>>> {
        if super::fork::generation() == 0 {
            Some(self.pending.lock().unwrap_or_else(PoisonError::into_inner))
        } else {
            self.pending.try_lock().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_forgotten_in_batches() {
        let r = Resolution::new(true, Duration::from_secs(1));
        for id in 0..FORGET_BATCH as i64 - 1 {
            assert_eq!(r.done(id), None);
        }
        let batch = r.done(-1).expect("a full batch");
        assert_eq!(batch.len(), FORGET_BATCH);
        assert_eq!(r.done(5), None);
    }

    #[test]
    fn a_missing_table_is_checked_again_later() {
        let r = Resolution::new(true, Duration::from_secs(1));
        assert_eq!(r.table(), Table::Unknown);
        r.set_table(Table::Missing);
        assert_eq!(r.table(), Table::Missing);
        // A failure older than RECHECK is worth another try.
        if let Some(origin) = Instant::now().checked_sub(RECHECK + Duration::from_secs(1)) {
            let old = Resolution {
                origin,
                ..Resolution::new(true, Duration::from_secs(1))
            };
            old.table.store(2, Relaxed);
            assert_eq!(old.table(), Table::Unknown);
        }
        r.set_table(Table::Ready);
        assert_eq!(r.table(), Table::Ready);
        assert!(r.first_warning() && !r.first_warning());
    }
}
