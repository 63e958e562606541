//! A throwaway pgbouncer in front of a kit PostgreSQL server.

use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cleanup;
use crate::error::KitError;
use crate::postgres::Tools;
use crate::process;
use crate::server::{ServerCore, Spec};

/// Debian package that provides `pgbouncer`.
const PACKAGE: &str = "pgbouncer";

/// A pgbouncer of its own on a free port of 127.0.0.1, pooling the
/// connections to a PostgreSQL server on 127.0.0.1 (every database, as
/// `* = host=127.0.0.1 port=UPSTREAM`).
///
/// Settings: `pool_mode = transaction`, `auth_type = trust` with the kit's
/// user `postgres` in its `auth_file` (no password anywhere), `postgres`
/// as admin of the console (database `pgbouncer`, see
/// [`console`](Self::console)); pgbouncer's defaults for the rest (among
/// them `query_wait_timeout = 120`, `default_pool_size = 20`,
/// `max_client_conn = 100`) unless [`start_with`](Self::start_with)
/// overrides them.
///
/// In transaction mode a server connection serves one client transaction
/// at a time: session state (`SET`, prepared statements: diesel's
/// statement cache of its query builder) does not follow the client from
/// one transaction to the next.
///
/// pgbouncer refuses to run as root: then it runs as the system user
/// `postgres`, like the kit's PostgreSQL. It dies with the test process
/// like the kit's servers; dropping the handle stops it.
pub struct Pgbouncer {
    core: ServerCore,
    config: Arc<Mutex<Config>>,
    psql: PathBuf,
}

/// What the configuration file says, rewritten at each start.
struct Config {
    dir: PathBuf,
    upstream_port: u16,
    settings: Vec<(String, String)>,
}

impl Pgbouncer {
    /// Starts a pgbouncer in front of the PostgreSQL server listening on
    /// `upstream_port` of 127.0.0.1 (a [`crate::Postgres`]'s
    /// [`port`](crate::Postgres::port), or a proxy's); returns once it
    /// accepts connections.
    pub fn start(upstream_port: u16) -> Result<Self, KitError> {
        Self::start_with(upstream_port, &[])
    }

    /// [`start`](Self::start) with settings of the `[pgbouncer]` section
    /// overridden or added, e.g. `&[("query_wait_timeout", "2")]`.
    pub fn start_with(upstream_port: u16, settings: &[(&str, &str)]) -> Result<Self, KitError> {
        let sbin = [PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")];
        let bouncer = process::find_binary("pgbouncer", &sbin, PACKAGE)?;
        let tools = Tools::find()?;
        let psql = tools.tool("psql")?;
        let reg = cleanup::register("pgbouncer", libc::SIGKILL)?;
        let dir = reg.dir().to_path_buf();
        if let Some((uid, gid)) = tools.owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| KitError::io(format!("chown {}", dir.display()), e))?;
        }
        let userlist = dir.join("userlist.txt");
        fs::write(&userlist, "\"postgres\" \"\"\n")
            .map_err(|e| KitError::io(format!("write {}", userlist.display()), e))?;

        let mut all = vec![
            ("listen_addr".to_string(), "127.0.0.1".to_string()),
            // No unix socket: with TCP its only listener, pgbouncer exits
            // when its port is taken instead of running without it.
            ("unix_socket_dir".into(), String::new()),
            ("auth_type".into(), "trust".into()),
            ("auth_file".into(), userlist.display().to_string()),
            ("admin_users".into(), "postgres".into()),
            ("pool_mode".into(), "transaction".into()),
        ];
        for (key, value) in settings {
            check_setting(key, value)?;
            match all.iter_mut().find(|(k, _)| k == key) {
                Some(kv) => kv.1 = value.to_string(),
                None => all.push((key.to_string(), value.to_string())),
            }
        }
        let config = Arc::new(Mutex::new(Config {
            dir: dir.clone(),
            upstream_port,
            settings: all,
        }));

        let for_command = config.clone();
        let spec = Spec {
            name: "pgbouncer",
            // SIGTERM: immediate shutdown (SIGINT waits for the clients).
            stop_signal: libc::SIGTERM,
            command: Box::new(move |port| {
                let ini = lock(&for_command).write(port);
                let mut cmd = Command::new(&bouncer);
                cmd.arg(ini).current_dir(&dir);
                tools.as_owner(&mut cmd);
                cmd
            }),
            probe: Box::new(|port| {
                TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .map(drop)
                    .map_err(|e| e.to_string())
            }),
        };
        let log = reg.dir().join("pgbouncer.log");
        Ok(Pgbouncer {
            core: ServerCore::start(spec, reg, log)?,
            config,
            psql,
        })
    }

    /// URL of the database `test` through pgbouncer:
    /// `postgres://postgres@127.0.0.1:PORT/test`.
    pub fn url(&self) -> String {
        self.url_for("test")
    }

    /// URL of the database `database` through pgbouncer.
    pub fn url_for(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port())
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.core.port()
    }

    /// pgbouncer's pid (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.core.pid()
    }

    /// pgbouncer's log (kept across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.core.dir().join("pgbouncer.log")
    }

    /// Immediate shutdown (`SIGTERM`: clients are disconnected); it stays
    /// down until [`start_again`](Self::start_again).
    pub fn stop(&self) {
        self.core.stop();
    }

    /// Starts the stopped pgbouncer again on the same port; returns once
    /// it accepts connections.
    pub fn start_again(&self) {
        self.core.start_again();
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again).
    pub fn restart(&self) {
        self.core.restart();
    }

    /// `SIGKILL`; it stays down until [`start_again`](Self::start_again).
    pub fn crash(&self) {
        self.core.crash();
    }

    /// `SIGSTOP`: connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.core.freeze();
    }

    /// `SIGCONT` of a frozen pgbouncer.
    pub fn thaw(&self) {
        self.core.thaw();
    }

    /// Sends new server connections to the PostgreSQL server on
    /// `upstream_port` (rewrites the configuration, then `RELOAD`);
    /// pgbouncer closes its connections to the old server as they are
    /// released.
    ///
    /// # Panics
    /// On failure.
    pub fn retarget(&self, upstream_port: u16) {
        {
            let mut config = lock(&self.config);
            config.upstream_port = upstream_port;
            config.write(self.port());
        }
        self.console("RELOAD");
    }

    /// Runs an admin console command (`SHOW POOLS`, `PAUSE`, `RESUME`,
    /// `RECONNECT`, `KILL test`, `SET key = value`, ...) with `psql` and
    /// returns its output: one line per row, columns separated by `|`.
    ///
    /// # Panics
    /// On failure.
    pub fn console(&self, command: &str) -> String {
        self.try_console(command).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs an admin console command; see [`console`](Self::console).
    pub fn try_console(&self, command: &str) -> Result<String, KitError> {
        let out = Command::new(&self.psql)
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.port().to_string(),
                "-U",
                "postgres",
                "-d",
                "pgbouncer",
            ])
            .arg("-c")
            .arg(command)
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .map_err(|e| KitError::io(format!("run {}", self.psql.display()), e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(KitError::Sql {
                what: format!("pgbouncer console: {command}"),
                detail: String::from_utf8_lossy(&out.stderr).trim_end().to_string(),
            })
        }
    }
}

impl Config {
    /// Writes `pgbouncer.ini` for `port`; returns its path.
    fn write(&self, port: u16) -> PathBuf {
        let mut text = format!(
            "[databases]\n* = host=127.0.0.1 port={}\n\n[pgbouncer]\nlisten_port = {port}\n",
            self.upstream_port
        );
        for (key, value) in &self.settings {
            text.push_str(&format!("{key} = {value}\n"));
        }
        let ini = self.dir.join("pgbouncer.ini");
        write_file(&ini, &text);
        ini
    }
}

fn write_file(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("pgbouncer: write {}: {e}", path.display()));
}

fn lock(config: &Mutex<Config>) -> MutexGuard<'_, Config> {
    config.lock().unwrap_or_else(|e| e.into_inner())
}

/// Refuses a setting that would break the file's syntax.
fn check_setting(key: &str, value: &str) -> Result<(), KitError> {
    let key_ok = !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if key_ok && !value.contains(['\n', '\r']) {
        Ok(())
    } else {
        Err(KitError::Server {
            server: "pgbouncer",
            detail: format!("bad setting {key:?} = {value:?}"),
            log_tail: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused() {
        assert!(check_setting("query_wait_timeout", "5").is_ok());
        assert!(check_setting("a b", "1").is_err());
        assert!(check_setting("x", "1\n[databases]").is_err());
    }
}
