//! PostgreSQL streaming replication for the kit's servers: a hot standby
//! of a kit [`Postgres`], its promotion, fencing a primary read-only,
//! pausing the standby's replay, waiting for it to catch up, and libpq
//! multi-host URLs.
//!
//! Every server is on 127.0.0.1 with a port of its own, so
//! `SELECT inet_server_port()` on a connection tells which server it
//! reached: compare it with [`Postgres::port`].
//!
//! ```no_run
//! # use db_txn_tests::Postgres;
//! # use std::time::Duration;
//! let primary = Postgres::start().unwrap();
//! let standby = primary.start_standby().unwrap();
//! primary.exec_in("test", "CREATE TABLE t (id INT); INSERT INTO t VALUES (1)");
//! assert!(standby.wait_caught_up(&primary, Duration::from_secs(10)));
//! assert_eq!(standby.query_i64_in("test", "SELECT COUNT(*) FROM t"), 1);
//! primary.crash();
//! standby.promote();
//! standby.exec_in("test", "INSERT INTO t VALUES (2)");
//! ```

use std::fmt;
use std::process::Command;
use std::time::Duration;

use diesel::connection::SimpleConnection;

use crate::error::KitError;
use crate::postgres::{scalar, sql_error, Postgres};
use crate::process;

/// How long `pg_basebackup` or a promotion may take.
const TOOL_LIMIT: Duration = Duration::from_secs(120);
/// How long a setting, pause or promotion may take to be in force.
const SETTLE: Duration = Duration::from_secs(30);

/// A position in the WAL (`pg_lsn`), as a byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    /// PostgreSQL's form, `16/B374D848`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

impl Postgres {
    /// Starts a hot standby of this server: a base backup
    /// (`pg_basebackup -R -X stream -c fast`, which writes the
    /// `primary_conninfo` and `standby.signal`) in a new kit directory,
    /// then the server on a free port, streaming from this one. Returns
    /// once the standby accepts (read-only) connections. About 1–3 s.
    ///
    /// The standby is a [`Postgres`] like any other: stop, crash, freeze,
    /// query it the same way. It keeps streaming when this server restarts
    /// on its port (it retries every 5 s, `wal_retrieve_retry_interval`).
    /// It copies this server's `ALTER SYSTEM` settings, a
    /// [fence](Self::set_read_only) included.
    pub fn start_standby(&self) -> Result<Postgres, KitError> {
        let tools = self.tools().clone();
        let basebackup = tools.tool("pg_basebackup")?;
        let port = self.port().to_string();
        let owner = tools.clone();
        Postgres::launch(tools, "postgres-standby", |data| {
            let dir = data.parent().unwrap_or(data);
            let mut cmd = Command::new(&basebackup);
            cmd.args(["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D"])
                .arg(data)
                .args(["-R", "-X", "stream", "-c", "fast", "--no-sync", "-w"])
                .current_dir(dir);
            owner.as_owner(&mut cmd);
            let log = dir.join("basebackup.log");
            process::run_tool("PostgreSQL", cmd, None, &log, TOOL_LIMIT)
        })
    }

    /// Promotes this standby (`pg_ctl promote`) and returns once it accepts
    /// writes.
    ///
    /// # Panics
    /// If it is not a standby, or does not accept writes within 30 s.
    pub fn promote(&self) {
        let pg_ctl = self
            .tools()
            .tool("pg_ctl")
            .unwrap_or_else(|e| panic!("{e}"));
        let data = self.dir().join("data");
        let mut cmd = Command::new(pg_ctl);
        cmd.args(["promote", "-w", "-t", "60", "-D"])
            .arg(&data)
            .current_dir(self.dir());
        self.tools().as_owner(&mut cmd);
        let log = self.dir().join("promote.log");
        process::run_tool("PostgreSQL", cmd, None, &log, TOOL_LIMIT)
            .unwrap_or_else(|e| panic!("{e}"));
        // A transaction id is only assigned where writes are allowed.
        let mut conn = self.connect("postgres").unwrap_or_else(|e| panic!("{e}"));
        let writable = process::poll_until(SETTLE, || {
            scalar(&mut conn, "SELECT CAST(txid_current() AS BIGINT)").is_ok()
        });
        assert!(
            writable,
            "PostgreSQL: not writable {SETTLE:?} after promotion"
        );
    }

    /// Whether the server is a standby (`pg_is_in_recovery()`).
    ///
    /// # Panics
    /// On failure.
    pub fn is_in_recovery(&self) -> bool {
        self.query_i64("SELECT CAST(pg_is_in_recovery() AS INT)") == 1
    }

    /// Fences the server read-only (`on`), or undoes it: `ALTER SYSTEM SET
    /// default_transaction_read_only = on` (or `RESET`), then a reload.
    /// Returns once new transactions of new and idle sessions are
    /// read-only: a write fails with SQLSTATE `25006`
    /// (`read_only_sql_transaction`), and libpq's
    /// `target_session_attrs=read-write` skips the server.
    ///
    /// A fence, not a wall: a session may still `SET
    /// default_transaction_read_only = off` or `BEGIN READ WRITE`; and a
    /// transaction already open keeps its mode. The kit's own
    /// [`exec`](Self::exec) is fenced too.
    ///
    /// # Panics
    /// On failure, or if the setting is not in force within 30 s.
    pub fn set_read_only(&self, on: bool) {
        let alter = if on {
            "ALTER SYSTEM SET default_transaction_read_only = on"
        } else {
            "ALTER SYSTEM RESET default_transaction_read_only"
        };
        // One statement per call: ALTER SYSTEM cannot run in a block.
        let mut conn = self.connect("postgres").unwrap_or_else(|e| panic!("{e}"));
        for sql in [
            "SET default_transaction_read_only = off",
            alter,
            "SELECT pg_reload_conf()",
        ] {
            conn.batch_execute(sql)
                .unwrap_or_else(|e| panic!("{}", sql_error(sql, e)));
        }
        // The postmaster reloads, then signals every backend; a new
        // session shows the postmaster's value, and the signal reached the
        // others before they run their next statement.
        let check = "SELECT CAST(current_setting('default_transaction_read_only') = 'on' AS INT)";
        let applied = process::poll_until(SETTLE, || {
            let fresh = self
                .connect("postgres")
                .and_then(|mut c| scalar(&mut c, check));
            fresh.is_ok_and(|v| v == i64::from(on))
        });
        assert!(
            applied,
            "PostgreSQL: default_transaction_read_only not {on} after {SETTLE:?}"
        );
    }

    /// Pauses WAL replay on this standby (`pg_wal_replay_pause()`) and
    /// returns once it is paused: what the primary commits from now on is
    /// received but not visible here (replication lag). A promotion ends
    /// the pause and replays everything received first, so it loses
    /// nothing the standby received.
    ///
    /// # Panics
    /// If it is not a standby, or not paused within 30 s.
    pub fn pause_replay(&self) {
        self.replay_to("pg_wal_replay_pause()", "paused");
    }

    /// Resumes WAL replay (`pg_wal_replay_resume()`) and returns once it
    /// runs.
    ///
    /// # Panics
    /// If it is not a standby, or not resumed within 30 s.
    pub fn resume_replay(&self) {
        self.replay_to("pg_wal_replay_resume()", "not paused");
    }

    fn replay_to(&self, call: &str, state: &str) {
        let mut conn = self.connect("postgres").unwrap_or_else(|e| panic!("{e}"));
        let sql = format!("SELECT {call}");
        conn.batch_execute(&sql)
            .unwrap_or_else(|e| panic!("{}", sql_error(&sql, e)));
        let check = format!("SELECT CAST(pg_get_wal_replay_pause_state() = '{state}' AS INT)");
        let done = process::poll_until(SETTLE, || {
            scalar(&mut conn, &check).unwrap_or_else(|e| panic!("{e}")) == 1
        });
        assert!(done, "PostgreSQL: replay not {state} after {SETTLE:?}");
    }

    /// The end of the WAL written by this primary
    /// (`pg_current_wal_lsn()`): what a standby must replay to have
    /// everything committed so far.
    ///
    /// # Panics
    /// On a standby, or on failure.
    pub fn current_wal_lsn(&self) -> Lsn {
        Lsn(self.query_i64("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn") as u64)
    }

    /// How far this standby has replayed (`pg_last_wal_replay_lsn()`).
    ///
    /// # Panics
    /// On a server that never was a standby, or on failure.
    pub fn replay_lsn(&self) -> Lsn {
        Lsn(self.query_i64("SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn") as u64)
    }

    /// Waits up to `limit` until this standby has replayed `lsn`; whether
    /// it has.
    ///
    /// # Panics
    /// On failure.
    pub fn wait_replayed(&self, lsn: Lsn, limit: Duration) -> bool {
        let mut conn = self.connect("postgres").unwrap_or_else(|e| panic!("{e}"));
        let sql = format!(
            "SELECT CAST(COALESCE(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false) AS INT)"
        );
        process::poll_until(limit, || {
            scalar(&mut conn, &sql).unwrap_or_else(|e| panic!("{e}")) == 1
        })
    }

    /// Waits up to `limit` until this standby has replayed everything
    /// `primary` has written now; whether it has.
    ///
    /// # Panics
    /// On failure.
    pub fn wait_caught_up(&self, primary: &Postgres, limit: Duration) -> bool {
        self.wait_replayed(primary.current_wal_lsn(), limit)
    }

    /// A libpq multi-host URL of `database` on `servers`, in that order:
    /// `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2/DB?target_session_attrs=ATTRS`.
    /// libpq tries the hosts in order and keeps the first that accepts the
    /// connection and fits `target_session_attrs` (`any`, `read-write`,
    /// `read-only`, `primary`, `standby`, `prefer-standby`). Append more
    /// parameters with `&` (`&connect_timeout=2`). libpq 15 has no
    /// `load_balance_hosts`.
    pub fn multi_host_url(
        servers: &[&Postgres],
        database: &str,
        target_session_attrs: &str,
    ) -> String {
        let hosts: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!(
            "postgres://postgres@{}/{database}?target_session_attrs={target_session_attrs}",
            hosts.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_shows_as_postgres_does() {
        assert_eq!(Lsn(0x16_B374_D848).to_string(), "16/B374D848");
        assert_eq!(Lsn(0x300_0060).to_string(), "0/3000060");
    }
}
