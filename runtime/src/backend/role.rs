//! What a server is in a replicated set-up, as the drivers report it: its
//! role (writable primary, read-only node, standby), where a commit is in
//! the replication stream, and whether a replica has applied it. The SQL is
//! each backend's own (`postgres/role.rs`, `mysql/role.rs`).

/// The role a server plays now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerRole {
    /// Writes are refused: a standby, a primary fenced or demoted
    /// read-only (PostgreSQL `transaction_read_only`, MariaDB/MySQL
    /// `read_only`).
    pub read_only: bool,
    /// The server replicates from another: a PostgreSQL standby
    /// (`pg_is_in_recovery()`); a MariaDB/MySQL node with `read_only` on.
    pub replica: bool,
}

/// Which position [`Driver::position`](super::Driver::position) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionOf {
    /// Of this session's last commit (MariaDB `@@last_gtid`), or the
    /// server's, where a session's own is not known.
    LastCommit,
    /// Everything the server has committed so far: at or past any commit
    /// made before it was read.
    Server,
}

/// How a replica stands against a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// It shows everything up to the position.
    Reached,
    /// It did not get there within the time allowed.
    Behind,
    /// It no longer replicates (promoted): not a replica to read from.
    NotAReplica,
}
