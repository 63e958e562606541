//! The [`PoolBuilder`] settings for more than one server: the role the
//! pool's server must have, read replicas, read-your-writes, and a
//! transaction-mode pooler in between.

use std::time::Duration;

use super::role::Role;
use super::PoolBuilder;
use crate::backend::TxnConnection;

impl<C: TxnConnection> PoolBuilder<C> {
    /// Only a writable server serves this pool (default on). A new
    /// connection to a read-only server (a standby, a primary demoted or
    /// fenced) is refused like an unreachable server: the pool keeps trying
    /// within the checkout timeout until a writable one answers, as during a
    /// failover. A write refused as read-only later
    /// ([`Disconnect::ReadOnly`](crate::Disconnect::ReadOnly)) runs again on
    /// a writable server, and the pool's other connections have their role
    /// checked before their next use, so the pool never keeps serving from
    /// a demoted node. The role is read with the server's other settings at
    /// connect: no extra round trip.
    ///
    /// Turn it off for a pool meant for a read-only server (reports on a
    /// replica, without [`replica`](Self::replica) routing):
    ///
    /// ```
    /// let builder = db_txn::Pool::<diesel::SqliteConnection>::builder(":memory:")
    ///     .require_writable(false);
    /// # let _ = builder;
    /// ```
    ///
    /// The role: PostgreSQL `transaction_read_only` (on for a standby and
    /// under `default_transaction_read_only`); MariaDB/MySQL
    /// `@@GLOBAL.read_only` (on with `super_read_only` too). SQLite is always
    /// writable.
    pub fn require_writable(mut self, on: bool) -> Self {
        self.config.policy.role = if on { Role::Primary } else { Role::Any };
        self
    }

    /// Add a read replica: `#[db_txn(read_only)]` functions on this pool run
    /// on a replica (round-robin among those that answer), every other call
    /// on the primary (the pool's own URL). Call once per replica.
    ///
    /// * A replica that gives no connection within
    ///   [`replica_checkout_timeout`](Self::replica_checkout_timeout) is left
    ///   out for a while (1 s, doubling up to 30 s) and the read runs on the
    ///   primary: a replica that is down never makes a read fail.
    /// * Only a replica serves: a PostgreSQL standby (`pg_is_in_recovery()`),
    ///   a MariaDB/MySQL server with `read_only` on. A replica that gets
    ///   promoted is noticed at its connections' next role check (at every
    ///   ping, and at least every second of use) and left out.
    /// * Read-your-writes: a read that follows a write on the same thread
    ///   never sees a state older than that write. The pool reads where the
    ///   write's COMMIT is in the replication stream (one query after each
    ///   write transaction: PostgreSQL's WAL location, MariaDB's
    ///   `@@last_gtid`, MySQL's `@@gtid_executed`), and the read waits until
    ///   the replica shows it, at most
    ///   [`read_your_writes_timeout`](Self::read_your_writes_timeout), then
    ///   runs on the primary (and for the next second, reads that need more
    ///   than that replica is known to show run on the primary at once). [`Pool::last_write`](super::Pool::last_write)
    ///   and [`Pool::read_after`](super::Pool::read_after) carry the guarantee
    ///   to other threads and processes.
    /// * A standby cancels a read that holds back its replay (SQLSTATE
    ///   40001, "conflict with recovery"): it is a conflict, run again under
    ///   `retry_conflicts`.
    ///
    /// Each replica is a pool of its own with this pool's settings
    /// (`max_size` connections at most); [`Pool::replica_stats`] reports them.
    ///
    /// ```no_run
    /// use diesel::PgConnection;
    /// # fn main() -> Result<(), db_txn::Error> {
    /// let pool = db_txn::Pool::<PgConnection>::builder("postgres://app@primary/app")
    ///     .replica("postgres://app@replica-1/app")
    ///     .replica("postgres://app@replica-2/app")
    ///     .build()?;
    /// db_txn::install(pool);
    /// # Ok(()) }
    /// ```
    ///
    /// [`Pool::replica_stats`]: super::Pool::replica_stats
    pub fn replica(mut self, url: impl Into<String>) -> Self {
        self.config.replicas.urls.push(url.into());
        self
    }

    /// How long a read waits for a connection to a replica before it runs
    /// on the primary instead (and the replica is left out for a while).
    /// Default 500 ms.
    pub fn replica_checkout_timeout(mut self, t: Duration) -> Self {
        self.config.replicas.checkout_timeout = t;
        self
    }

    /// How long a read waits for a replica to catch up with the writes it
    /// must see (this thread's, or a [`WriteToken`](crate::WriteToken)'s)
    /// before it runs on the primary instead. Default 250 ms. PostgreSQL is
    /// asked every few milliseconds (`pg_last_wal_replay_lsn()`), MariaDB
    /// and MySQL wait on the server (`MASTER_GTID_WAIT`,
    /// `WAIT_FOR_EXECUTED_GTID_SET`).
    pub fn read_your_writes_timeout(mut self, t: Duration) -> Self {
        self.config.replicas.ryw_timeout = t;
        self
    }

    /// The server is reached through a transaction-mode pooler (pgbouncer
    /// `pool_mode = transaction`, or any pooler that gives each transaction
    /// whichever server session is free). Default off.
    ///
    /// In that mode a server session is the client's only for one
    /// transaction, so the pool keeps nothing in it between transactions:
    /// diesel's prepared-statement cache is off (a named statement would be
    /// missing, or another client's, in the next transaction), the checkout
    /// ping is a simple query, and the liveness probe asks only whether the
    /// server answers (a session id means nothing there). A call whose
    /// server is down behind the pooler ends within about
    /// [`liveness_check_after`](Self::liveness_check_after) +
    /// [`liveness_probe_timeout`](Self::liveness_probe_timeout) + the
    /// checkout timeout, instead of the pooler's own wait (pgbouncer's
    /// `query_wait_timeout`, 120 s).
    ///
    /// What does not work through such a pooler, with or without db_txn:
    /// anything that must outlive a transaction on the session. Use the
    /// transaction-scoped form instead: `SET LOCAL` rather than `SET` (the
    /// `on_connect` hook runs once per client connection, not per server
    /// session, so session settings there do not stick),
    /// `pg_advisory_xact_lock` rather than `pg_advisory_lock`, no `LISTEN`,
    /// no `PREPARE`, no temporary table kept across calls. db_txn's own
    /// settings are transaction-scoped on PostgreSQL (`SET LOCAL`); on
    /// MariaDB/MySQL a statement timeout is a session setting, so
    /// `#[db_txn(timeout = ...)]` is refused there
    /// ([`Error::Unsupported`](crate::Error::Unsupported)).
    ///
    /// ```no_run
    /// use diesel::PgConnection;
    /// # fn main() -> Result<(), db_txn::Error> {
    /// let pool = db_txn::Pool::<PgConnection>::builder("postgres://app@pgbouncer:6432/app")
    ///     .transaction_pooler(true)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn transaction_pooler(mut self, on: bool) -> Self {
        self.config.settings.transaction_pooler = on;
        self
    }
}
