//! A throwaway MariaDB server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};

use crate::admin::{check_name, subquery, Scalar};
use crate::cleanup;
use crate::error::KitError;
use crate::process;
use crate::server::{ServerCore, Spec};
use crate::template::Template;

/// Debian package that provides `mariadbd` and `mariadb-install-db`.
const PACKAGE: &str = "mariadb-server";
/// A small redo log (the default 96 MiB would be copied for every server).
const LOG_FILE_SIZE: &str = "--innodb-log-file-size=16M";

/// A MariaDB server of its own: a temporary data directory, a free port of
/// 127.0.0.1, user `root` without password, and a database `test`.
///
/// Tuned for speed, not durability against a machine crash: no binary log
/// (except on the servers of [`start_primary`](Self::start_primary) and
/// [`start_replica`](Self::start_replica)), no doublewrite buffer, a small buffer pool, and the redo log written (not
/// synced) at each commit (`innodb_flush_log_at_trx_commit=2`), so a commit
/// survives [`crash_restart`](Self::crash_restart), which kills the process.
///
/// Dropping it stops the server and removes its directory.
pub struct MariaDb {
    core: ServerCore,
    /// Set on a server that can replicate (binary log on).
    server_id: Option<u32>,
    /// The unix socket of the kit's admin connections, if they do not go
    /// through TCP (see [`crate::mariadb_replication`]).
    admin_socket: Option<PathBuf>,
}

impl MariaDb {
    /// Starts a new server (a copy of this process's freshly installed data
    /// directory, start, `CREATE DATABASE test`).
    pub fn start() -> Result<Self, KitError> {
        Self::launch(None)
    }

    /// Starts a server; with a `server_id`, one that can replicate (see
    /// [`start_primary`](Self::start_primary)).
    pub(crate) fn launch(server_id: Option<u32>) -> Result<Self, KitError> {
        let sbin = vec![PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")];
        let server = process::find_binary("mariadbd", &sbin, PACKAGE)?;
        let install = process::find_binary("mariadb-install-db", &sbin, PACKAGE)?;
        // SAFETY: plain system call.
        let root = unsafe { libc::geteuid() } == 0;
        static TEMPLATE: OnceLock<Result<Template, String>> = OnceLock::new();
        let template = Template::get(&TEMPLATE, "MariaDB", "mariadb-template", |dir| {
            install_db(&install, dir, root)
        })?;

        let kind = if server_id.is_some() {
            "mariadb-repl"
        } else {
            "mariadb"
        };
        let reg = cleanup::register(kind, libc::SIGKILL)?;
        let dir = reg.dir().to_path_buf();
        let data = dir.join("data");
        template.copy_to(&data, None)?;
        let tmp = private_tmpdir(&dir)?;
        let socket = dir.join("mysqld.sock");

        let log = dir.join("server.log");
        let server_log = log.clone();
        let server_socket = socket.clone();
        let spec = Spec {
            name: "MariaDB",
            // SIGTERM: shutdown that disconnects the clients.
            stop_signal: libc::SIGTERM,
            command: Box::new(move |port| {
                let mut cmd = Command::new(&server);
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--port={port}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", server_socket.display()))
                    .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
                    .arg(format!("--log-error={}", server_log.display()))
                    .arg(format!("--tmpdir={}", tmp.display()))
                    .args([
                        "--skip-name-resolve",
                        "--performance-schema=OFF",
                        "--max-connections=500",
                        "--innodb-buffer-pool-size=32M",
                        LOG_FILE_SIZE,
                        // No O_DIRECT, which tmpfs (/dev/shm) does not offer.
                        "--innodb-flush-method=fsync",
                        "--innodb-flush-log-at-trx-commit=2",
                        "--skip-innodb-doublewrite",
                        "--innodb-buffer-pool-dump-at-shutdown=OFF",
                        "--innodb-buffer-pool-load-at-startup=OFF",
                    ])
                    .env("TMPDIR", &tmp)
                    .current_dir(&dir);
                match server_id {
                    None => {
                        cmd.arg("--skip-log-bin");
                    }
                    Some(id) => {
                        cmd.arg(format!("--server-id={id}"))
                            .arg(format!("--log-bin={}", dir.join("binlog").display()))
                            .arg(format!("--relay-log={}", dir.join("relay").display()))
                            .arg("--log-slave-updates");
                    }
                }
                if root {
                    cmd.arg("--user=root");
                }
                cmd
            }),
            probe: Box::new(|port| {
                MysqlConnection::establish(&admin_url(port))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        };
        let db = MariaDb {
            core: ServerCore::start(spec, reg, log)?,
            server_id,
            admin_socket: server_id.map(|_| socket),
        };
        if server_id.is_some() {
            // Not in the binary log: each node does it for itself.
            db.try_exec(
                "SET sql_log_bin = 0; CREATE DATABASE test; \
                 REVOKE READ_ONLY ADMIN ON *.* FROM 'root'@'127.0.0.1'",
            )?;
        } else {
            db.try_exec("CREATE DATABASE test")?;
        }
        Ok(db)
    }

    /// The server of this test binary, started on first use and stopped at
    /// exit. For tests that do not disrupt it (no stop, freeze, kill...);
    /// isolate them with [`create_database`](Self::create_database).
    ///
    /// # Panics
    /// If the server cannot be started.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<MariaDb> = OnceLock::new();
        SHARED.get_or_init(|| Self::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// URL of the database `test`: `mysql://root@127.0.0.1:PORT/test`.
    pub fn url(&self) -> String {
        self.url_for("test")
    }

    /// URL of the database `database` (which this does not create).
    pub fn url_for(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port())
    }

    /// Creates the database `name`, dropping any previous one of that name,
    /// and returns its URL.
    ///
    /// # Panics
    /// If `name` is not a plain identifier, or on SQL failure.
    pub fn create_database(&self, name: &str) -> String {
        check_name(name);
        self.exec(&format!(
            "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`"
        ));
        self.url_for(name)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.core.port()
    }

    /// The pid of `mariadbd` (it changes at each start; 0 while stopped).
    pub fn pid(&self) -> u32 {
        self.core.pid()
    }

    /// The server's log file (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.core.dir().join("server.log")
    }

    /// Graceful stop (`SIGTERM`), then start again on the same port and
    /// data directory; returns once the server accepts connections.
    pub fn restart(&self) {
        self.core.restart();
    }

    /// Graceful stop; the server stays down until
    /// [`start_again`](Self::start_again).
    pub fn stop(&self) {
        self.core.stop();
    }

    /// Starts the stopped server again; returns once it accepts connections.
    pub fn start_again(&self) {
        self.core.start_again();
    }

    /// `SIGKILL`, then start again (InnoDB crash recovery); returns once the
    /// server accepts connections.
    pub fn crash_restart(&self) {
        self.core.crash_restart();
    }

    /// `SIGKILL`, as a machine crash would; the server stays down until
    /// [`start_again`](Self::start_again) (which recovers).
    pub fn crash(&self) {
        self.core.crash();
    }

    /// `SIGSTOP` of the server: connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.core.freeze();
    }

    /// `SIGCONT` of a frozen server.
    pub fn thaw(&self) {
        self.core.thaw();
    }

    /// Runs `sql` (one or more `;`-separated statements) on a fresh admin
    /// connection (no default database: qualify names, `test.t`).
    ///
    /// # Panics
    /// On failure.
    pub fn exec(&self, sql: &str) {
        self.try_exec(sql).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `sql` (one or more `;`-separated statements) on a fresh admin
    /// connection (no default database).
    pub fn try_exec(&self, sql: &str) -> Result<(), KitError> {
        self.admin()?
            .batch_execute(sql)
            .map_err(|e| sql_error(sql, e))
    }

    /// Runs `sql` (one or more `;`-separated statements) on a fresh
    /// connection to `database`.
    ///
    /// # Panics
    /// On failure.
    pub fn exec_in(&self, database: &str, sql: &str) {
        self.try_exec_in(database, sql)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `sql` (one or more `;`-separated statements) on a fresh
    /// connection to `database`.
    pub fn try_exec_in(&self, database: &str, sql: &str) -> Result<(), KitError> {
        self.connect(&self.admin_url_for(database))?
            .batch_execute(sql)
            .map_err(|e| sql_error(sql, e))
    }

    /// What the server's sessions are doing, one line each: user, database,
    /// command, time, state, transaction (state, start, rows locked, the
    /// transaction it waits for) and statement; for a failing test's
    /// message. Never panics: a failure is described instead.
    pub fn activity(&self) -> String {
        let sql = "SELECT COALESCE(GROUP_CONCAT(CONCAT_WS(' | ', CONCAT('session ', p.ID), \
                   p.USER, COALESCE(p.DB, '-'), p.COMMAND, CONCAT(p.TIME, ' s'), \
                   COALESCE(p.STATE, '-'), COALESCE(CONCAT('trx ', t.trx_id, ' ', t.trx_state, \
                   ' since ', t.trx_started, ', ', t.trx_rows_locked, ' rows locked'), \
                   'no transaction'), COALESCE(CONCAT('waits for trx ', w.blocking_trx_id), \
                   'not waiting'), COALESCE(LEFT(p.INFO, 160), '-')) SEPARATOR '\n'), '') AS v \
                   FROM information_schema.PROCESSLIST p \
                   LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID \
                   LEFT JOIN information_schema.INNODB_LOCK_WAITS w \
                   ON w.requesting_trx_id = t.trx_id \
                   WHERE p.ID <> CONNECTION_ID()";
        let title = format!("MariaDB on port {}", self.port());
        crate::admin::text_report(&title, self.admin(), sql)
    }

    /// The value of a query returning one row of one integer column
    /// (`SELECT COUNT(*) FROM test.t`), on a fresh admin connection.
    ///
    /// # Panics
    /// On failure or a `NULL` result.
    pub fn query_i64(&self, sql: &str) -> i64 {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        scalar(&mut conn, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The value of a query returning one row of one integer column
    /// (`SELECT COUNT(*) FROM t`), on a fresh connection to `database`.
    ///
    /// # Panics
    /// On failure or a `NULL` result.
    pub fn query_i64_in(&self, database: &str, sql: &str) -> i64 {
        let mut conn = self
            .connect(&self.admin_url_for(database))
            .unwrap_or_else(|e| panic!("{e}"));
        scalar(&mut conn, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `KILL CONNECTION id` (`id` from `SELECT CONNECTION_ID()` on the
    /// victim); returns once the connection is gone from the process list.
    ///
    /// # Panics
    /// On failure, or if it is still listed after 10 s.
    pub fn kill_connection(&self, id: i64) {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        let kill = format!("KILL CONNECTION {id}");
        conn.batch_execute(&kill)
            .unwrap_or_else(|e| panic!("{}", sql_error(&kill, e)));
        let listed = format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id}");
        let gone = process::poll_until(Duration::from_secs(10), || {
            scalar(&mut conn, &listed).unwrap_or_else(|e| panic!("{e}")) == 0
        });
        assert!(
            gone,
            "MariaDB: connection {id} still listed 10 s after KILL"
        );
    }

    /// How many client connections use `database` now, not counting the
    /// admin connection that counts.
    ///
    /// # Panics
    /// On failure.
    pub fn connection_count(&self, database: &str) -> i64 {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        let sql = "SELECT COUNT(*) AS v FROM information_schema.PROCESSLIST \
                   WHERE DB = ? AND ID <> CONNECTION_ID() \
                   AND COMMAND NOT IN ('Daemon', 'Killed')";
        diesel::sql_query(sql)
            .bind::<Text, _>(database)
            .get_result::<Scalar>(&mut conn)
            .map(|r| r.v)
            .unwrap_or_else(|e| panic!("{}", sql_error(sql, e)))
    }

    /// The connection ids (for [`kill_connection`](Self::kill_connection)) of the
    /// client connections that use `database` now, in ascending order, not
    /// counting the admin connection that lists them.
    ///
    /// # Panics
    /// On failure.
    pub fn connection_ids(&self, database: &str) -> Vec<i64> {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        let sql = "SELECT ID AS v FROM information_schema.PROCESSLIST \
                   WHERE DB = ? AND ID <> CONNECTION_ID() \
                   AND COMMAND NOT IN ('Daemon', 'Killed') ORDER BY ID";
        diesel::sql_query(sql)
            .bind::<Text, _>(database)
            .load::<Scalar>(&mut conn)
            .map(|rows| rows.into_iter().map(|r| r.v).collect())
            .unwrap_or_else(|e| panic!("{}", sql_error(sql, e)))
    }

    /// Polls [`connection_count`](Self::connection_count) until it equals
    /// `expected` or `limit` passed; returns the last count (closing a
    /// connection reaches the server a moment later).
    pub fn wait_connection_count(&self, database: &str, expected: i64, limit: Duration) -> i64 {
        let mut count = self.connection_count(database);
        process::poll_until(limit, || {
            count = self.connection_count(database);
            count == expected
        });
        count
    }

    /// A fresh admin connection (no default database).
    pub(crate) fn admin(&self) -> Result<MysqlConnection, KitError> {
        self.connect(&self.admin_url_for(""))
    }

    /// URL of the kit's admin connections to `database` (none if empty).
    fn admin_url_for(&self, database: &str) -> String {
        match &self.admin_socket {
            Some(socket) => format!(
                "mysql://root@localhost/{database}?unix_socket={}",
                socket.display()
            ),
            None => format!("mysql://root@127.0.0.1:{}/{database}", self.port()),
        }
    }

    /// The server id of a server that can replicate.
    pub(crate) fn replication_id(&self) -> Option<u32> {
        self.server_id
    }

    /// A fresh connection to `url`.
    fn connect(&self, url: &str) -> Result<MysqlConnection, KitError> {
        MysqlConnection::establish(url).map_err(|e| KitError::Sql {
            what: format!("connect to {url}"),
            detail: e.to_string(),
        })
    }
}

/// Initializes `<dir>/data` with `mariadb-install-db`.
fn install_db(install: &Path, dir: &Path, root: bool) -> Result<(), KitError> {
    let tmp = private_tmpdir(dir)?;
    let mut cmd = Command::new(install);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--tmpdir={}", tmp.display()))
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
            "--innodb-flush-method=fsync",
            LOG_FILE_SIZE,
        ])
        .env("TMPDIR", &tmp)
        .current_dir(dir);
    if root {
        cmd.arg("--user=root");
    }
    let log = dir.join("install.log");
    process::run_tool("MariaDB", cmd, None, &log, Duration::from_secs(120))
}

/// Creates `<dir>/tmp`, the server's own tmpdir: at start-up mariadbd
/// deletes the `#sql*` files of its tmpdir, which would include another
/// server's bootstrap tables if they shared /tmp.
fn private_tmpdir(dir: &Path) -> Result<PathBuf, KitError> {
    let tmp = dir.join("tmp");
    std::fs::create_dir(&tmp).map_err(|e| KitError::io(format!("create {}", tmp.display()), e))?;
    Ok(tmp)
}

/// URL of the admin connection: `root`, no default database.
fn admin_url(port: u16) -> String {
    format!("mysql://root@127.0.0.1:{port}/")
}

pub(crate) fn scalar(conn: &mut MysqlConnection, sql: &str) -> Result<i64, KitError> {
    let sql = format!("SELECT CAST(({}) AS SIGNED) AS v", subquery(sql));
    diesel::sql_query(&sql)
        .get_result::<Scalar>(conn)
        .map(|r| r.v)
        .map_err(|e| sql_error(&sql, e))
}

pub(crate) fn sql_error(sql: &str, e: diesel::result::Error) -> KitError {
    KitError::Sql {
        what: sql.to_string(),
        detail: e.to_string(),
    }
}
