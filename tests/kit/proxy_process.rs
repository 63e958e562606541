//! The fault proxy as a process of its own: in a real deployment a proxy,
//! NAT or load balancer is another process (on another machine), and the
//! server sees its connections, not the client's. Fault tests of those rows
//! use this.
//!
//! The program is `db_txn_faultproxy`, a binary of this package (source in
//! `tests/kit/faultproxy/`). Cargo builds a package's binaries before its
//! integration tests and puts them in `target/<profile>/`, next to the
//! `deps/` directory that holds the test executables; [`ProxyProcess::binary`]
//! looks there (or at `$DB_TXN_FAULTPROXY`).
//!
//! The process dies with the test process: the kit starts it with
//! `PR_SET_PDEATHSIG` like its servers (see [`crate::process`]), it exits
//! when its standard input (the control pipe) closes, it is killed when
//! its handle is dropped or at `exit()`, and a leftover is reaped on the
//! kit's next run (see [`crate::cleanup`]).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::cleanup::{self, Registration};
use crate::error::KitError;
use crate::faultproxy::control::{self, Command as ProxyCommand};
use crate::faultproxy::engine::{CommitFault, Cut};
use crate::process;

pub use crate::faultproxy::engine::Stats as ProxyStats;

/// Names the proxy in errors.
const NAME: &str = "fault proxy";
/// How long the program may take to start listening.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long a command may take (the proxy gives a fault 10 s to settle).
const REPLY_LIMIT: Duration = Duration::from_secs(30);

/// A fault-injecting TCP proxy in a process of its own, on a free port of
/// 127.0.0.1, in front of one upstream address.
///
/// Every fault is in force when the method that applies it returns. A
/// black hole holds the bytes (and the end of a stream) and delivers them
/// when lifted. While it lasts, the proxy's kernel still acknowledges
/// what it receives, so unlike a lost route it does not make TCP keepalive
/// or `TCP_USER_TIMEOUT` fire: only timeouts above TCP (a read timeout, a
/// statement or ping timeout) notice it.
///
/// The methods panic if the proxy process fails (with its log's tail).
/// Dropping the handle kills the process.
pub struct ProxyProcess {
    /// First field: dropping it kills the process before the pipes close.
    reg: Registration,
    control: Mutex<Control>,
    addr: SocketAddr,
    log: PathBuf,
}

/// The control pipes.
struct Control {
    input: ChildStdin,
    output: LineReader,
}

impl ProxyProcess {
    /// Starts a proxy process relaying to `upstream` and returns once it
    /// listens.
    pub fn start(upstream: SocketAddr) -> Result<ProxyProcess, KitError> {
        let bin = Self::binary()?;
        let reg = cleanup::register("faultproxy", libc::SIGKILL)?;
        let log = reg.dir().join("proxy.log");
        let stderr = process::open_log(&log)?;
        let mut cmd = Command::new(&bin);
        cmd.arg("--upstream")
            .arg(upstream.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            // Where the kit's clean-up looks for leftovers.
            .current_dir(reg.dir());
        let failed = |detail: String| KitError::Server {
            server: NAME,
            detail,
            log_tail: process::log_tail(&log),
        };
        let mut child = process::spawn_child(cmd)
            .map_err(|e| failed(format!("cannot run {}: {e}", bin.display())))?;
        reg.set_pid(child.id());
        let (Some(input), Some(output)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(failed("no control pipes".into()));
        };
        let mut output = LineReader::new(output);
        let greeting = output
            .read_line(READY_LIMIT)
            .map_err(|e| failed(format!("{} did not start: {e}", bin.display())))?;
        let addr = control::parse_greeting(&greeting).map_err(failed)?;
        Ok(ProxyProcess {
            reg,
            control: Mutex::new(Control { input, output }),
            addr,
            log,
        })
    }

    /// The `db_txn_faultproxy` program: `$DB_TXN_FAULTPROXY` if set, else
    /// the one cargo built next to the running executable (a test in
    /// `target/<profile>/deps/`, an example in `target/<profile>/examples/`,
    /// or a binary in `target/<profile>/`).
    pub fn binary() -> Result<PathBuf, KitError> {
        let exe =
            std::env::current_exe().map_err(|e| KitError::io("find the running executable", e))?;
        find_program(std::env::var_os("DB_TXN_FAULTPROXY"), &exe)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The proxy process's pid.
    pub fn pid(&self) -> u32 {
        self.reg.pid()
    }

    /// The proxy's log (its standard error: one line per command).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Closes every open connection with a FIN on both sides (client and
    /// server each read the end of the stream); returns how many, once
    /// their sockets are closed. New connections work as before.
    pub fn cut_all(&self) -> usize {
        self.count(ProxyCommand::Cut(Cut::Fin))
    }

    /// Like [`cut_all`](Self::cut_all) with a reset (RST) on both sides:
    /// client and server get `ECONNRESET`.
    pub fn reset_all(&self) -> usize {
        self.count(ProxyCommand::Cut(Cut::Rst))
    }

    /// Black-holes the connections open now, in both directions, while
    /// new ones work: a NAT or firewall that forgot its mappings. Their
    /// sockets stay open, nothing they send arrives, nothing comes back;
    /// what they send is held, and delivered if
    /// [`lift_blackhole`](Self::lift_blackhole) is called. Returns how many.
    pub fn blackhole_existing(&self) -> usize {
        self.count(ProxyCommand::BlackholeExisting)
    }

    /// Black-holes everything, like a dead NAT: open connections forward
    /// nothing (their bytes are held), and a new connection is accepted but
    /// not connected upstream, so its client waits for the server's answer
    /// (or its greeting) in vain.
    pub fn blackhole_all(&self) {
        self.command(ProxyCommand::BlackholeAll);
    }

    /// Lifts every black hole: what was held is delivered in order, new
    /// connections held at accept are connected upstream.
    pub fn lift_blackhole(&self) {
        self.command(ProxyCommand::Lift);
    }

    /// Arms a one-shot fault: the next `COMMIT` any client sends through
    /// the proxy reaches the server, its reply is swallowed, then the
    /// connection is cut (FIN). The transaction committed; the client
    /// cannot know. Replaces a `COMMIT` fault still armed.
    pub fn cut_after_commit(&self) {
        self.command(ProxyCommand::Arm(CommitFault::CutAfter));
    }

    /// Arms a one-shot fault: the next `COMMIT` any client sends through
    /// the proxy never reaches the server: the connection is cut (FIN)
    /// where the `COMMIT` message begins, what came before it forwarded.
    /// The server rolls the transaction back. Replaces a `COMMIT` fault
    /// still armed.
    ///
    /// What counts as a `COMMIT`: MySQL `COM_QUERY` `COMMIT`; PostgreSQL
    /// simple query `COMMIT`/`END`, or the `Execute` of a portal bound to a
    /// statement parsed from `COMMIT` (extended protocol).
    pub fn drop_commit(&self) {
        self.command(ProxyCommand::Arm(CommitFault::Drop));
    }

    /// Arms a one-shot fault: the next `COMMIT` any client sends through
    /// the proxy is held: what came before it is forwarded, then its
    /// connection is black-holed from the `COMMIT` on, as by
    /// [`blackhole_existing`](Self::blackhole_existing). The server's
    /// session stays open in its transaction, the client waits for an
    /// answer; [`lift_blackhole`](Self::lift_blackhole) delivers the
    /// `COMMIT`. Replaces a `COMMIT` fault still armed.
    pub fn hold_commit(&self) {
        self.command(ProxyCommand::Arm(CommitFault::Hold));
    }

    /// Whether an armed `COMMIT` fault has not fired yet. A
    /// [`cut_after_commit`](Self::cut_after_commit) fires when the server's
    /// reply to the `COMMIT` has come (and was swallowed), or the connection
    /// ended before it: once this is false, the server is done with that
    /// `COMMIT`, so a crash from then on cannot undo it.
    pub fn commit_fault_pending(&self) -> bool {
        self.count(ProxyCommand::Pending) != 0
    }

    /// New connections go to `upstream` (a VIP or DNS name switched to
    /// another server); open ones stay on the old one.
    pub fn retarget(&self, upstream: SocketAddr) {
        self.command(ProxyCommand::Retarget(upstream));
    }

    /// What the proxy holds now.
    pub fn stats(&self) -> ProxyStats {
        let text = self.command(ProxyCommand::Stats);
        control::parse_stats(&text).unwrap_or_else(|e| panic!("{NAME}: {e}"))
    }

    /// How many client connections are open through the proxy (black-holed
    /// ones included).
    pub fn live_connections(&self) -> usize {
        self.stats().open
    }

    /// Sends a command whose reply is a number.
    fn count(&self, command: ProxyCommand) -> usize {
        let reply = self.command(command);
        reply
            .parse()
            .unwrap_or_else(|_| panic!("{NAME}: `{}`: bad reply {reply:?}", command.to_line()))
    }

    /// Sends `command` and returns the value of its `ok` reply.
    fn command(&self, command: ProxyCommand) -> String {
        let line = command.to_line();
        let mut control = self.lock();
        let reply = writeln!(control.input, "{line}")
            .and_then(|()| control.input.flush())
            .map_err(|e| format!("cannot send: {e}"))
            .and_then(|()| control.output.read_line(REPLY_LIMIT));
        match reply {
            Ok(reply) => match reply.strip_prefix("ok ") {
                Some(value) => value.to_string(),
                None => panic!("{NAME}: `{line}` failed: {reply}"),
            },
            Err(e) => panic!(
                "{NAME} (pid {}): `{line}`: {e}\n--- log tail ---\n{}",
                self.pid(),
                process::log_tail(&self.log)
            ),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Reads lines from a pipe, with a time limit.
struct LineReader {
    pipe: ChildStdout,
    buf: Vec<u8>,
}

impl LineReader {
    fn new(pipe: ChildStdout) -> Self {
        LineReader {
            pipe,
            buf: Vec::new(),
        }
    }

    /// The next line (without its newline), waiting up to `limit`.
    fn read_line(&mut self, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line[..end]).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no answer within {limit:?}"));
            }
            let mut pfd = libc::pollfd {
                fd: self.pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: polls one descriptor we own, described by `pfd`.
            if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
                continue;
            }
            let mut chunk = [0u8; 4096];
            match self.pipe.read(&mut chunk) {
                Ok(0) => return Err("the proxy process exited".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("cannot read its answer: {e}")),
            }
        }
    }
}

/// The program named by `from_env`, else next to `exe` (in its directory
/// or the one above).
fn find_program(from_env: Option<std::ffi::OsString>, exe: &Path) -> Result<PathBuf, KitError> {
    let missing = |detail: String| KitError::Server {
        server: NAME,
        detail,
        log_tail: String::new(),
    };
    if let Some(path) = from_env {
        let path = PathBuf::from(path);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(missing(format!(
                "$DB_TXN_FAULTPROXY is {}, which is not an executable file",
                path.display()
            )))
        };
    }
    let dirs: Vec<&Path> = exe.ancestors().skip(1).take(2).collect();
    for dir in &dirs {
        let candidate = dir.join(control::PROGRAM);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    let searched: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    Err(missing(format!(
        "program `{program}` not found (searched {searched}). It is a binary of the \
         package `db_txn_tests`, which cargo builds before that package's integration \
         tests; elsewhere, build it with `cargo build --bin {program}` (same profile) \
         or set $DB_TXN_FAULTPROXY to its path",
        program = control::PROGRAM,
        searched = searched.join(", "),
    )))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_says_how_to_build_it() {
        let exe = Path::new("/nonexistent/target/debug/deps/some_test-0123");
        let msg = find_program(None, exe).unwrap_err().to_string();
        assert!(msg.contains("cargo build --bin db_txn_faultproxy"), "{msg}");
        assert!(
            msg.contains("/nonexistent/target/debug/deps, /nonexistent/target/debug"),
            "{msg}"
        );
        let msg = find_program(Some("/nonexistent/proxy".into()), exe)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("$DB_TXN_FAULTPROXY is /nonexistent/proxy"),
            "{msg}"
        );
    }

    #[test]
    fn the_program_is_found_next_to_a_test() {
        // A target/<profile>/ of its own: the program, and deps/ below.
        let profile = std::env::temp_dir().join(format!("db_txn_kit_find-{}", std::process::id()));
        let deps = profile.join("deps");
        std::fs::create_dir_all(&deps).unwrap();
        let program = profile.join(control::PROGRAM);
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = find_program(None, &deps.join("a_test-0123"));
        std::fs::remove_dir_all(&profile).unwrap();
        assert_eq!(found.unwrap(), program);
    }
}
