//! The vocabulary of commit-outcome resolution (issue 10), shared by the
//! backends: how a server can tell, after the connection was lost while
//! COMMIT was in flight, whether the transaction committed. The SQL is each
//! backend's own (`mysql/resolve.rs`, `postgres/resolve.rs`); the steps are
//! in `runner/commit.rs`.

/// How a server tells a lost COMMIT's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Nothing to find out: no link can be lost (SQLite).
    None,
    /// A row written by the transaction itself (keyed by a random id) is in
    /// the library's table if and only if the transaction committed; a
    /// locking read on it waits while the transaction is still open
    /// (MariaDB/MySQL).
    Marker,
    /// The transaction's id, read just before COMMIT, and the server's
    /// record of its fate (PostgreSQL `txid_status`).
    Xid,
}

/// What identifies one transaction's outcome on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// The id of the marker row the transaction wrote.
    Marker {
        /// The row's key.
        id: i64,
    },
    /// What PostgreSQL said about the transaction just before COMMIT.
    Xid(XidToken),
}

/// PostgreSQL's view of a transaction, read inside it just before COMMIT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XidToken {
    /// `txid_current_if_assigned()`: 64 bits, epoch included.
    pub txid: i64,
    /// The backend that ran it (through a pooler too: read inside the
    /// transaction, not at connect).
    pub pid: i32,
    /// `pg_postmaster_start_time()`, in microseconds since 2000-01-01 (as
    /// the server keeps it): a restart since then may have lost the
    /// transaction's WAL and handed its id to another transaction.
    pub started: i64,
    /// The WAL timeline (hexadecimal, as in WAL file names): another one
    /// means a failover, whose new primary may have given the id to
    /// another transaction.
    pub timeline: String,
}

/// What a fresh connection found out about a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It committed.
    Committed,
    /// It did not commit, and never will.
    Aborted,
    /// It is still open on the server (its session has not noticed the lost
    /// link yet), or being rolled back.
    InProgress,
    /// The server cannot tell; the reason, for the log.
    Unknown(&'static str),
}
