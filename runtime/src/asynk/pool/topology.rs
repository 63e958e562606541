//! The [`AsyncPoolBuilder`] settings for read replicas and
//! read-your-writes (what `replicas.rs` does with them).

use std::time::Duration;

use super::builder::AsyncPoolBuilder;
use crate::backend::AsyncTxnConnection;

impl<C: AsyncTxnConnection> AsyncPoolBuilder<C> {
    /// Add a read replica, as
    /// [`PoolBuilder::replica`](crate::PoolBuilder::replica): `#[db_txn(read_only)]`
    /// functions on this pool run on a replica (round-robin among those that
    /// answer), every other call on the primary (the pool's own URL). Call
    /// once per replica.
    ///
    /// * A replica that gives no connection within
    ///   [`replica_checkout_timeout`](Self::replica_checkout_timeout) is left
    ///   out for a while (1 s, doubling up to 30 s) and the read runs on the
    ///   primary: a replica that is down never makes a read fail.
    /// * Only a replica serves: a PostgreSQL standby (`pg_is_in_recovery()`),
    ///   a MariaDB/MySQL server with `read_only` on. A replica that gets
    ///   promoted is noticed at its connections' next role check (at every
    ///   ping, and at least every second of use) and left out.
    /// * Read-your-writes, **per pool** (where the sync pool keeps it per
    ///   thread): a task moves between threads at every await and a thread
    ///   runs many tasks, so no thread stands for "the caller". Instead every
    ///   read on the pool waits for every write the pool knows of: each
    ///   write transaction committed on it (its COMMIT's position, read with
    ///   one query after it: PostgreSQL's WAL location, MariaDB's
    ///   `@@last_gtid`, MySQL's `@@gtid_executed`) and each
    ///   [`WriteToken`](crate::WriteToken) given to
    ///   [`AsyncPool::read_after`](super::AsyncPool::read_after). That is
    ///   stronger than per task (a read also sees other tasks' writes made
    ///   before it started), and it costs more under a steady stream of
    ///   writes: a replica lagging behind the latest write makes reads wait,
    ///   at most [`read_your_writes_timeout`](Self::read_your_writes_timeout),
    ///   then run on the primary (and for the next second, reads that need
    ///   more than that replica is known to show run on the primary at
    ///   once). [`AsyncPool::last_write`](super::AsyncPool::last_write)
    ///   gives the token to carry the guarantee to another pool or process.
    /// * A standby cancels a read that holds back its replay (SQLSTATE
    ///   40001, "conflict with recovery"): it is a conflict, run again under
    ///   `retry_conflicts`.
    ///
    /// Each replica is an async pool of its own with this pool's settings
    /// (`max_size` connections at most);
    /// [`AsyncPool::replica_stats`](super::AsyncPool::replica_stats) reports
    /// them.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), db_txn::Error> {
    /// use diesel_async::AsyncPgConnection;
    /// let pool = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@primary/app")
    ///     .replica("postgres://app@replica-1/app")
    ///     .replica("postgres://app@replica-2/app")
    ///     .build()
    ///     .await?;
    /// db_txn::install_async(pool);
    /// # Ok(()) }
    /// ```
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
    /// must see (the pool's, see [`replica`](Self::replica)) before it runs
    /// on the primary instead. Default 250 ms. PostgreSQL is asked every few
    /// milliseconds (`pg_last_wal_replay_lsn()`), MariaDB and MySQL wait on
    /// the server (`MASTER_GTID_WAIT`, `WAIT_FOR_EXECUTED_GTID_SET`).
    pub fn read_your_writes_timeout(mut self, t: Duration) -> Self {
        self.config.replicas.ryw_timeout = t;
        self
    }
}
