//! A throwaway PostgreSQL server.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};

use crate::admin::{check_name, subquery, Scalar};
use crate::cleanup;
use crate::error::KitError;
use crate::process;
use crate::server::{ServerCore, Spec};
use crate::template::Template;

/// Debian package that provides `initdb` and `postgres`.
const PACKAGE: &str = "postgresql";

/// A PostgreSQL server of its own: a temporary data directory, a free port
/// of 127.0.0.1 (and a unix socket in the temporary directory), user
/// `postgres` with `trust` authentication, and a database `test`.
///
/// Run as root, the server runs as the system user `postgres` (PostgreSQL
/// refuses root); [`pid`](Self::pid) is the postmaster's own pid.
///
/// Tuned for speed, not durability against a machine crash: `fsync`,
/// `full_page_writes` and autovacuum off. `synchronous_commit` stays on,
/// which costs only a `write()` without `fsync`, so that a commit reported to
/// the client survives [`crash_restart`](Self::crash_restart), which kills
/// every server process (with it off, the last commits may live only in the
/// shared memory that dies with them).
///
/// Dropping it stops the server and removes its directory.
pub struct Postgres {
    core: ServerCore,
    tools: Tools,
}

/// Where the PostgreSQL programs are, and whom the server runs as.
#[derive(Clone)]
pub(crate) struct Tools {
    /// The `postgres` binary.
    pub server: PathBuf,
    /// `Some((uid, gid))` of the user `postgres` if we are root.
    pub owner: Option<(u32, u32)>,
}

impl Tools {
    pub(crate) fn find() -> Result<Self, KitError> {
        Ok(Tools {
            server: process::find_binary("postgres", &bin_dirs(), PACKAGE)?,
            owner: server_user()?,
        })
    }

    /// Another program of the server's version (`initdb`, `pg_ctl`...).
    pub(crate) fn tool(&self, name: &str) -> Result<PathBuf, KitError> {
        let bin = self
            .server
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        process::find_binary(name, &[bin], PACKAGE)
    }

    /// `cmd` set to run as the server's user.
    pub(crate) fn as_owner(&self, cmd: &mut Command) {
        as_user(cmd, self.owner);
    }
}

impl Postgres {
    /// Starts a new server: a copy of this process's template data
    /// directory (`initdb` and `CREATE DATABASE test`, done once), then
    /// start.
    pub fn start() -> Result<Self, KitError> {
        let tools = Tools::find()?;
        let initdb = tools.tool("initdb")?;
        let owner = tools.owner;
        static TEMPLATE: OnceLock<Result<Template, String>> = OnceLock::new();
        let template = Template::get(&TEMPLATE, "PostgreSQL", "postgres-template", |dir| {
            build_template(&initdb, &tools.server, dir, owner)
        })?;
        Self::launch(tools, "postgres", |data| template.copy_to(data, owner))
    }

    /// Starts a server whose data directory `fill` creates (it gets the
    /// path, in a fresh kit directory owned by the server's user).
    pub(crate) fn launch(
        tools: Tools,
        kind: &str,
        fill: impl FnOnce(&Path) -> Result<(), KitError>,
    ) -> Result<Self, KitError> {
        // SIGQUIT (immediate shutdown) at drop and exit: quick, and it still
        // frees the System V shared memory segment.
        let reg = cleanup::register(kind, libc::SIGQUIT)?;
        let dir = reg.dir().to_path_buf();
        chown(&dir, tools.owner)?;
        let data = dir.join("data");
        fill(&data)?;

        let (server, owner) = (tools.server.clone(), tools.owner);
        let spec = Spec {
            name: "PostgreSQL",
            // SIGINT: "fast" shutdown, which disconnects the clients
            // (SIGTERM would wait for them to leave).
            stop_signal: libc::SIGINT,
            command: Box::new(move |port| {
                let mut cmd = Command::new(&server);
                cmd.arg("-D")
                    .arg(&data)
                    .arg("-p")
                    .arg(port.to_string())
                    .arg("-k")
                    .arg(&dir);
                for setting in [
                    "listen_addresses=127.0.0.1",
                    "fsync=off",
                    "synchronous_commit=on",
                    "full_page_writes=off",
                    "autovacuum=off",
                    "jit=off",
                    "max_connections=300",
                    "shared_buffers=32MB",
                    // The data directory may be in RAM (/dev/shm): keep the
                    // WAL small.
                    "max_wal_size=96MB",
                    "min_wal_size=32MB",
                    // Dynamic shared memory as files in the data directory,
                    // not in /dev/shm where a killed server would leave them.
                    "dynamic_shared_memory_type=mmap",
                ] {
                    cmd.arg("-c").arg(setting);
                }
                cmd.current_dir(&dir);
                as_user(&mut cmd, owner);
                cmd
            }),
            probe: Box::new(|port| {
                PgConnection::establish(&admin_url(port))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        };
        let log = reg.dir().join("server.log");
        Ok(Postgres {
            core: ServerCore::start(spec, reg, log)?,
            tools,
        })
    }

    /// The server of this test binary, started on first use and stopped at
    /// exit. For tests that do not disrupt it (no stop, freeze, kill...);
    /// isolate them with [`create_database`](Self::create_database).
    ///
    /// # Panics
    /// If the server cannot be started.
    pub fn shared() -> &'static Self {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| Self::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// URL of the database `test`: `postgres://postgres@127.0.0.1:PORT/test`.
    pub fn url(&self) -> String {
        self.url_for("test")
    }

    /// URL of the database `database` (which this does not create).
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port())
    }

    /// Creates the database `name` (case kept), dropping any previous one of
    /// that name, and returns its URL.
    ///
    /// # Panics
    /// If `name` is not a plain identifier, or on SQL failure.
    pub fn create_database(&self, name: &str) -> String {
        check_name(name);
        self.exec(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
        self.exec(&format!("CREATE DATABASE \"{name}\""));
        self.url_for(name)
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.core.port()
    }

    /// The postmaster's pid (it changes at each start; 0 while stopped).
    pub fn pid(&self) -> u32 {
        self.core.pid()
    }

    /// The server's log file (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.core.dir().join("server.log")
    }

    /// Graceful ("fast", `SIGINT`) stop, then start again on the same port
    /// and data directory; returns once the server accepts connections.
    pub fn restart(&self) {
        self.core.restart();
    }

    /// Graceful ("fast") stop; the server stays down until
    /// [`start_again`](Self::start_again).
    pub fn stop(&self) {
        self.core.stop();
    }

    /// Starts the stopped server again; returns once it accepts connections.
    pub fn start_again(&self) {
        self.core.start_again();
    }

    /// `SIGKILL` of the postmaster and all its processes, then start again
    /// (WAL recovery); returns once the server accepts connections.
    pub fn crash_restart(&self) {
        self.core.crash_restart();
    }

    /// `SIGKILL` of the postmaster and all its processes, as a machine
    /// crash would; the server stays down until
    /// [`start_again`](Self::start_again) (which recovers from the WAL).
    pub fn crash(&self) {
        self.core.crash();
    }

    /// The temporary directory (the data directory is its `data`).
    pub(crate) fn dir(&self) -> &Path {
        self.core.dir()
    }

    pub(crate) fn tools(&self) -> &Tools {
        &self.tools
    }

    /// `SIGSTOP` of the postmaster and all its child processes (backends
    /// included): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.core.freeze();
    }

    /// `SIGCONT` of a frozen server's processes.
    pub fn thaw(&self) {
        self.core.thaw();
    }

    /// Runs `sql` on a fresh admin connection (database `postgres`);
    /// several `;`-separated statements run as one implicit transaction.
    ///
    /// # Panics
    /// On failure.
    pub fn exec(&self, sql: &str) {
        self.try_exec(sql).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `sql` on a fresh admin connection (database `postgres`).
    pub fn try_exec(&self, sql: &str) -> Result<(), KitError> {
        self.try_exec_in("postgres", sql)
    }

    /// Runs `sql` on a fresh connection to `database`.
    ///
    /// # Panics
    /// On failure.
    pub fn exec_in(&self, database: &str, sql: &str) {
        self.try_exec_in(database, sql)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Runs `sql` on a fresh connection to `database`.
    pub fn try_exec_in(&self, database: &str, sql: &str) -> Result<(), KitError> {
        self.connect(database)?
            .batch_execute(sql)
            .map_err(|e| sql_error(sql, e))
    }

    /// What the server's backends are doing, one line each: user, database,
    /// state, type, transaction start, wait, the backends blocking it, and
    /// statement; for a failing test's message. Never panics: a failure is
    /// described instead.
    pub fn activity(&self) -> String {
        let sql = "SELECT COALESCE(string_agg(concat_ws(' | ', 'pid ' || pid, usename, datname, \
                   state, backend_type, 'transaction since ' || xact_start, \
                   'waits on ' || wait_event_type || ':' || wait_event, \
                   'blocked by ' || NULLIF(pg_blocking_pids(pid)::text, '{}'), \
                   left(query, 160)), E'\\n'), '') AS v \
                   FROM pg_stat_activity WHERE pid <> pg_backend_pid()";
        let title = format!("PostgreSQL on port {}", self.port());
        crate::admin::text_report(&title, self.admin(), sql)
    }

    /// The value of a query returning one row of one integer column
    /// (`SELECT COUNT(*) FROM pg_database`), on a fresh admin connection
    /// (database `postgres`; see [`query_i64_in`](Self::query_i64_in)).
    ///
    /// # Panics
    /// On failure or a `NULL` result.
    pub fn query_i64(&self, sql: &str) -> i64 {
        self.query_i64_in("postgres", sql)
    }

    /// The value of a query returning one row of one integer column
    /// (`SELECT COUNT(*) FROM t`), on a fresh connection to `database`.
    ///
    /// # Panics
    /// On failure or a `NULL` result.
    pub fn query_i64_in(&self, database: &str, sql: &str) -> i64 {
        let mut conn = self.connect(database).unwrap_or_else(|e| panic!("{e}"));
        scalar(&mut conn, sql).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `pg_terminate_backend(pid)` (`pid` from `SELECT pg_backend_pid()` on
    /// the victim); returns once the backend is gone.
    ///
    /// # Panics
    /// On failure, or if the backend is still there after 10 s.
    pub fn kill_connection(&self, pid: i64) {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        let kill = format!("SELECT CAST(pg_terminate_backend({pid}) AS INT)");
        let killed = scalar(&mut conn, &kill).unwrap_or_else(|e| panic!("{e}"));
        let listed = format!("SELECT COUNT(*) FROM pg_stat_activity WHERE pid = {pid}");
        let gone = process::poll_until(Duration::from_secs(10), || {
            scalar(&mut conn, &listed).unwrap_or_else(|e| panic!("{e}")) == 0
        });
        assert!(
            killed == 1 && gone,
            "PostgreSQL: backend {pid} not terminated (terminated: {killed}, gone: {gone})"
        );
    }

    /// How many client connections use `database` now, not counting the
    /// admin connection that counts.
    ///
    /// # Panics
    /// On failure.
    pub fn connection_count(&self, database: &str) -> i64 {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        let sql = "SELECT COUNT(*) AS v FROM pg_stat_activity \
                   WHERE datname = $1 AND pid <> pg_backend_pid() \
                   AND backend_type = 'client backend'";
        diesel::sql_query(sql)
            .bind::<Text, _>(database)
            .get_result::<Scalar>(&mut conn)
            .map(|r| r.v)
            .unwrap_or_else(|e| panic!("{}", sql_error(sql, e)))
    }

    /// The backend pids (for [`kill_connection`](Self::kill_connection)) of the
    /// client connections that use `database` now, in ascending order, not
    /// counting the admin connection that lists them.
    ///
    /// # Panics
    /// On failure.
    pub fn connection_ids(&self, database: &str) -> Vec<i64> {
        let mut conn = self.admin().unwrap_or_else(|e| panic!("{e}"));
        let sql = "SELECT CAST(pid AS BIGINT) AS v FROM pg_stat_activity \
                   WHERE datname = $1 AND pid <> pg_backend_pid() \
                   AND backend_type = 'client backend' ORDER BY pid";
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

    /// A fresh admin connection to the database `postgres`.
    fn admin(&self) -> Result<PgConnection, KitError> {
        self.connect("postgres")
    }

    /// A fresh connection to `database`.
    pub(crate) fn connect(&self, database: &str) -> Result<PgConnection, KitError> {
        PgConnection::establish(&self.url_for(database)).map_err(|e| KitError::Sql {
            what: format!("connect to {database}"),
            detail: e.to_string(),
        })
    }
}

/// URL of the admin connection (database `postgres`).
fn admin_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

/// Where Debian installs the server binaries: `/usr/lib/postgresql/N/bin`,
/// newest version first.
fn bin_dirs() -> Vec<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort_by_key(|v| std::cmp::Reverse(v.0));
    versions.into_iter().map(|(_, p)| p).collect()
}

/// `Some((uid, gid))` of the system user `postgres` if we are root (the
/// server must not run as root), `None` otherwise (it runs as us).
fn server_user() -> Result<Option<(u32, u32)>, KitError> {
    // SAFETY: plain system call.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, which outlive the call.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let r = libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut found,
        );
        if r != 0 || found.is_null() {
            return Err(KitError::Server {
                server: "PostgreSQL",
                detail: format!(
                    "the system user `postgres` is missing (PostgreSQL refuses to run as \
                     root); install the Debian package `{PACKAGE}`, which creates it"
                ),
                log_tail: String::new(),
            });
        }
        Ok(Some((pwd.pw_uid, pwd.pw_gid)))
    }
}

/// Initializes `<dir>/data` with `initdb` and creates the database `test`
/// in it (with a single-user `postgres`), as `owner`.
fn build_template(
    initdb: &Path,
    server: &Path,
    dir: &Path,
    owner: Option<(u32, u32)>,
) -> Result<(), KitError> {
    chown(dir, owner)?;
    let data = dir.join("data");
    let limit = Duration::from_secs(120);
    let mut cmd = Command::new(initdb);
    cmd.arg("-D")
        .arg(&data)
        .args([
            "--username=postgres",
            "--auth=trust",
            "--no-sync",
            "--no-locale",
            "--encoding=UTF8",
        ])
        .current_dir(dir);
    as_user(&mut cmd, owner);
    process::run_tool("PostgreSQL", cmd, None, &dir.join("initdb.log"), limit)?;

    let sql = dir.join("create-test.sql");
    std::fs::write(&sql, "CREATE DATABASE test;\n")
        .map_err(|e| KitError::io(format!("write {}", sql.display()), e))?;
    let log = dir.join("single-user.log");
    let mut cmd = Command::new(server);
    cmd.arg("--single")
        .arg("-D")
        .arg(&data)
        .args(["-c", "fsync=off", "postgres"])
        .current_dir(dir);
    as_user(&mut cmd, owner);
    process::run_tool("PostgreSQL", cmd, Some(&sql), &log, limit)?;
    // Single-user mode reports a failed statement but still exits with 0.
    if process::log_tail(&log).contains("ERROR:") {
        return Err(KitError::Server {
            server: "PostgreSQL",
            detail: "CREATE DATABASE test failed in single-user mode".into(),
            log_tail: process::log_tail(&log),
        });
    }
    Ok(())
}

/// Gives `dir` to `owner`, if any.
fn chown(dir: &Path, owner: Option<(u32, u32)>) -> Result<(), KitError> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(dir, Some(uid), Some(gid))
            .map_err(|e| KitError::io(format!("chown {}", dir.display()), e)),
        None => Ok(()),
    }
}

/// Runs `cmd` as `owner`, set directly on the command so the pid is the
/// program's own (no `su`/`runuser` in between).
fn as_user(cmd: &mut Command, owner: Option<(u32, u32)>) {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = owner {
        cmd.uid(uid).gid(gid);
    }
}

pub(crate) fn scalar(conn: &mut PgConnection, sql: &str) -> Result<i64, KitError> {
    let sql = format!("SELECT CAST(({}) AS BIGINT) AS v", subquery(sql));
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
