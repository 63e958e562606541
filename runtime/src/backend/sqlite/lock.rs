//! SQLite's one writer at a time, and what it means for a call that needs a
//! transaction of its own while its caller on the same thread holds one
//! (issue 9).
//!
//! Every write transaction begins with `BEGIN IMMEDIATE`, which takes the
//! database's write lock and waits up to `busy_timeout` while another
//! connection holds it. When that other connection is the caller's, held
//! by a body further up this thread's stack, the wait can never end: the
//! call used to wait out the whole busy timeout and then fail with
//! "database is locked". The runner refuses such a call at once instead.
//!
//! Which pairs block each other depends on the journal:
//!
//! | caller \ inner call  | read-only     | writes          |
//! |----------------------|---------------|-----------------|
//! | read-only            | never         | outside WAL (1) |
//! | writes               | outside WAL (2) | always        |
//!
//! (1) the caller's shared lock keeps the inner COMMIT from taking the
//! exclusive lock. (2) the in-memory (`memdb`) database refuses readers
//! while a writer holds its lock; a rollback-journal file lets them read
//! until the writer spills pages, so the pool refuses both alike.

/// A database that takes one writer at a time across connections: which
/// one, and how its readers and writer get along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SingleWriter {
    /// The database file, as an id unique in this process; `None` for a
    /// database without a file (in memory): the pool's id identifies it.
    pub database: Option<u64>,
    /// `journal_mode = WAL`: readers and the writer do not block each other.
    pub wal: bool,
}

impl SingleWriter {
    /// Whether a transaction that `inner_writes` waits for one, on the same
    /// database, that `caller_writes`.
    pub(crate) fn blocks(self, caller_writes: bool, inner_writes: bool) -> bool {
        if self.wal {
            caller_writes && inner_writes
        } else {
            caller_writes || inner_writes
        }
    }
}

/// The id of the database file at `path` (as SQLite reports it: absolute).
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(super) fn database_id(path: &str) -> u64 {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock, PoisonError};
    static IDS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let mut ids = IDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let next = ids.len() as u64 + 1;
    *ids.entry(path.to_owned()).or_insert(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let wal = SingleWriter {
            database: Some(1),
            wal: true,
        };
        let rollback = SingleWriter { wal: false, ..wal };
        // (caller writes, inner writes)
        assert!(!wal.blocks(false, false));
        assert!(!wal.blocks(false, true));
        assert!(!wal.blocks(true, false));
        assert!(wal.blocks(true, true));
        assert!(!rollback.blocks(false, false));
        assert!(rollback.blocks(false, true));
        assert!(rollback.blocks(true, false));
        assert!(rollback.blocks(true, true));
    }

    #[test]
    fn one_id_per_file() {
        let a = database_id("/tmp/lock-test-a.db");
        assert_eq!(database_id("/tmp/lock-test-a.db"), a);
        assert_ne!(database_id("/tmp/lock-test-b.db"), a);
    }
}
