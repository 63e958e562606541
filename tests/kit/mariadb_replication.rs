//! MariaDB GTID replication for the kit's servers: a primary and its
//! replicas, replication lag, read-only nodes and a switchover.
//!
//! The servers of [`MariaDb::start_primary`] and
//! [`MariaDb::start_replica`] have the binary log on (with
//! `log_slave_updates`, so any of them can become a primary) and a server id
//! of their own, unique in the test process (`@@server_id`, also
//! [`MariaDb::server_id`]). They differ from [`MariaDb::start`]'s in one
//! more way: `read_only` must apply to the clients, and it does not apply
//! to a user with the `READ_ONLY ADMIN` privilege, which `root` has. So on
//! these servers `'root'@'127.0.0.1'`, the user of the URLs, lacks it (a
//! write on a read-only node fails with error 1290), while the kit's own
//! admin connections ([`MariaDb::exec`], [`MariaDb::query_i64`], ...) go
//! through the unix socket as `'root'@'localhost'`, which keeps it: they
//! work on a read-only node.
//!
//! Every server is on 127.0.0.1 with a port of its own, so `SELECT @@port`
//! or `SELECT @@server_id` on a connection tells which server it reached.
//!
//! ```no_run
//! # use db_txn_tests::MariaDb;
//! # use std::time::Duration;
//! let primary = MariaDb::start_primary().unwrap();
//! let replica = primary.start_replica().unwrap();
//! primary.exec("CREATE TABLE test.t (id INT PRIMARY KEY); INSERT INTO test.t VALUES (1)");
//! assert!(replica.wait_caught_up(&primary, Duration::from_secs(10)));
//! primary.switchover_to(&replica);
//! replica.exec("INSERT INTO test.t VALUES (2)");
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;

use crate::admin::TextScalar;
use crate::error::KitError;
use crate::mariadb::{scalar, sql_error, MariaDb};

/// How long a switchover waits for the replica to catch up.
const CATCH_UP: Duration = Duration::from_secs(30);

/// Server ids handed out in this process.
static NEXT_SERVER_ID: AtomicU32 = AtomicU32::new(1);

impl MariaDb {
    /// Starts a server that can be a replication primary: binary log on,
    /// GTIDs, a server id of its own (see [`crate::mariadb_replication`]).
    pub fn start_primary() -> Result<MariaDb, KitError> {
        MariaDb::launch(Some(NEXT_SERVER_ID.fetch_add(1, Ordering::SeqCst)))
    }

    /// Starts a new server replicating from this one
    /// ([`replicate_from`](Self::replicate_from)), and returns once it has
    /// caught up. It starts from the same freshly installed data directory
    /// and replays this server's whole binary log, so this one must come
    /// from [`start_primary`](Self::start_primary) (or be a replica).
    pub fn start_replica(&self) -> Result<MariaDb, KitError> {
        if self.replication_id().is_none() {
            return Err(KitError::Server {
                server: "MariaDB",
                detail: "start_replica: this server has no binary log; start it with \
                         MariaDb::start_primary()"
                    .into(),
                log_tail: String::new(),
            });
        }
        let replica = MariaDb::start_primary()?;
        replica.try_replicate_from(self)?;
        if !replica.wait_caught_up(self, CATCH_UP) {
            return Err(KitError::Server {
                server: "MariaDB",
                detail: format!("the new replica did not catch up within {CATCH_UP:?}"),
                log_tail: crate::process::log_tail(&replica.log_path()),
            });
        }
        Ok(replica)
    }

    /// Makes this server a read-only replica of `primary`, from where its
    /// own binary log ends: `CHANGE MASTER TO ...
    /// MASTER_USE_GTID=slave_pos` (with `gtid_slave_pos` set to
    /// `@@gtid_binlog_pos`, so a former primary does not replay its own
    /// transactions), `SET GLOBAL read_only=1`, `START SLAVE`. Returns
    /// without waiting for it to catch up.
    ///
    /// # Panics
    /// On failure.
    pub fn replicate_from(&self, primary: &MariaDb) {
        self.try_replicate_from(primary)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn try_replicate_from(&self, primary: &MariaDb) -> Result<(), KitError> {
        self.admin_batch(&[
            "STOP SLAVE",
            "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos",
            &format!(
                "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, \
                 MASTER_USER = 'root', MASTER_PASSWORD = '', \
                 MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1",
                primary.port()
            ),
            "SET GLOBAL read_only = 1",
            "START SLAVE",
        ])
    }

    /// Stops replication for good (`STOP SLAVE; RESET SLAVE ALL`); the
    /// server stays read-only if it was.
    ///
    /// # Panics
    /// On failure.
    pub fn detach(&self) {
        self.admin_batch(&["STOP SLAVE", "RESET SLAVE ALL"])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The server id (`@@server_id`) of a server that can replicate.
    ///
    /// # Panics
    /// On a server from [`start`](Self::start), which has none of its own.
    pub fn server_id(&self) -> u32 {
        self.replication_id()
            .expect("server_id: a server from MariaDb::start() does not replicate")
    }

    /// `@@gtid_binlog_pos`: the GTID of the last transaction in this
    /// server's binary log, per domain (`0-1-42`), empty if none.
    ///
    /// # Panics
    /// On failure.
    pub fn gtid_binlog_pos(&self) -> String {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        let sql = "SELECT @@gtid_binlog_pos AS v";
        diesel::sql_query(sql)
            .get_result::<TextScalar>(&mut conn)
            .map(|r| r.v)
            .unwrap_or_else(|e| panic!("{}", sql_error(sql, e)))
    }

    /// Waits up to `limit` (`MASTER_GTID_WAIT`) until this replica has
    /// applied everything in `primary`'s binary log now; whether it has.
    /// It has not while its SQL thread is stopped.
    ///
    /// # Panics
    /// On failure.
    pub fn wait_caught_up(&self, primary: &MariaDb, limit: Duration) -> bool {
        let pos = primary.gtid_binlog_pos();
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        let sql = format!(
            "SELECT MASTER_GTID_WAIT('{pos}', {:.3})",
            limit.as_secs_f64()
        );
        scalar(&mut conn, &sql).unwrap_or_else(|e| panic!("{e}")) == 0
    }

    /// Stops the replica's SQL thread (`STOP SLAVE SQL_THREAD`): it keeps
    /// receiving the primary's transactions but applies none of them
    /// (replication lag) until [`start_sql_thread`](Self::start_sql_thread).
    ///
    /// # Panics
    /// On failure.
    pub fn stop_sql_thread(&self) {
        self.exec("STOP SLAVE SQL_THREAD");
    }

    /// Starts the replica's SQL thread again (`START SLAVE SQL_THREAD`).
    ///
    /// # Panics
    /// On failure.
    pub fn start_sql_thread(&self) {
        self.exec("START SLAVE SQL_THREAD");
    }

    /// `SET GLOBAL read_only = 1` (or 0). On a server of
    /// [`start_primary`](Self::start_primary) a write through the URLs then
    /// fails with error 1290 (`ER_OPTION_PREVENTS_STATEMENT`); the
    /// replication threads and the kit's admin connections still write.
    ///
    /// Turning it on is done as a careful switchover does, with a bounded
    /// wait, tried again until it takes. `SET GLOBAL read_only = 1` takes
    /// the server's backup lock: it waits for the writing statements that
    /// are running, and new ones wait behind it. When a running write waits
    /// for a row lock of a transaction whose next statement is such a new
    /// one, nothing moves until InnoDB gives up on the row lock
    /// (`innodb_lock_wait_timeout`, 50 s): that write fails with 1205, a
    /// plain lock-wait timeout. Seen here under the failover tests' load.
    /// So each try waits at most 1 s (`lock_wait_timeout`); when it gives
    /// up, the queue behind it drains, and the next try takes the lock.
    ///
    /// # Panics
    /// On failure, or if turning it on has not succeeded within 30 s.
    pub fn set_read_only(&self, on: bool) {
        if !on {
            return self.exec("SET GLOBAL read_only = 0");
        }
        let deadline = Instant::now() + CATCH_UP;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.admin_batch(&[
                "SET SESSION lock_wait_timeout = 1",
                "SET GLOBAL read_only = 1",
            ]) {
                Ok(()) => return,
                Err(e) if is_lock_wait_timeout(&e) && Instant::now() < deadline => {}
                Err(e) => panic!("MariaDB read_only = 1, try {tries}: {e}"),
            }
        }
    }

    /// Switches the primary role from this server to `replica`: this
    /// server becomes read-only, `replica` catches up with it, stops
    /// replicating ([`detach`](Self::detach)) and becomes writable. This
    /// server is left read-only and replicating from nobody
    /// ([`replicate_from`](Self::replicate_from) makes it a replica of the
    /// new primary).
    ///
    /// # Panics
    /// On failure, or if `replica` does not catch up within 30 s.
    pub fn switchover_to(&self, replica: &MariaDb) {
        self.set_read_only(true);
        assert!(
            replica.wait_caught_up(self, CATCH_UP),
            "MariaDB switchover: the replica did not catch up within {CATCH_UP:?}"
        );
        replica.detach();
        replica.set_read_only(false);
    }

    /// Runs `statements` one by one on one admin connection.
    fn admin_batch(&self, statements: &[&str]) -> Result<(), KitError> {
        let mut conn = self.admin()?;
        for sql in statements {
            conn.batch_execute(sql).map_err(|e| sql_error(sql, e))?;
        }
        Ok(())
    }
}

/// MariaDB's error 1205 (`ER_LOCK_WAIT_TIMEOUT`), as the kit reports it.
fn is_lock_wait_timeout(e: &KitError) -> bool {
    e.to_string().contains("Lock wait timeout exceeded")
}
