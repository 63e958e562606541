//! The lifecycle the kit's servers share: start on a free port and wait
//! until it accepts connections; stop, start again, restart, crash, freeze
//! and thaw. What differs per server is in a [`Spec`].

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use crate::cleanup::Registration;
use crate::error::KitError;
use crate::ports;
use crate::process;
use crate::proctree;

/// How long a server may take to accept connections after its start.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the server is killed.
const STOP_LIMIT: Duration = Duration::from_secs(60);
/// How many ports to try when the chosen one turns out to be taken.
const PORT_TRIES: usize = 5;

/// What the lifecycle needs to know about one kind of server.
pub(crate) struct Spec {
    /// Name in messages, e.g. `MariaDB`.
    pub name: &'static str,
    /// The signal for a graceful stop that does not wait for clients.
    pub stop_signal: libc::c_int,
    /// The server's command line for a port (output is redirected here).
    pub command: Box<dyn Fn(u16) -> Command + Send + Sync>,
    /// Tries one admin connection to the port: `Ok` once it is ready.
    pub probe: Box<dyn Fn(u16) -> Result<(), String> + Send + Sync>,
}

/// A server process: its spec, directory, port and log.
pub(crate) struct ServerCore {
    spec: Spec,
    reg: Registration,
    log: PathBuf,
    port: u16,
    /// Serializes the lifecycle operations.
    lifecycle: Mutex<()>,
}

/// A test that fails while the server runs loses its log with its
/// directory: the log's tail goes to the test's output first, so that what
/// the server (or pooler) saw, a connection it closed and why, is on record
/// in CI.
impl Drop for ServerCore {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- {} on port {} ({}), last lines of its log:\n{}\n---",
                self.spec.name,
                self.port,
                self.log.display(),
                process::log_tail(&self.log)
            );
        }
    }
}

/// Why a launch failed.
enum LaunchError {
    /// The port was taken by someone else: try another.
    PortTaken,
    /// Anything else.
    Failed(KitError),
}

impl ServerCore {
    /// Starts the server on a free port (trying another if the port turns
    /// out to be taken) and waits until it accepts connections. Its output
    /// goes to `log`.
    pub fn start(spec: Spec, reg: Registration, log: PathBuf) -> Result<Self, KitError> {
        let mut core = ServerCore {
            spec,
            reg,
            log,
            port: ports::free_port(),
            lifecycle: Mutex::new(()),
        };
        for _ in 0..PORT_TRIES {
            match core.launch() {
                Ok(()) => return Ok(core),
                Err(LaunchError::Failed(e)) => return Err(e),
                Err(LaunchError::PortTaken) => core.port = ports::free_port(),
            }
        }
        Err(KitError::Server {
            server: core.spec.name,
            detail: format!("{PORT_TRIES} ports in a row were taken"),
            log_tail: process::log_tail(&core.log),
        })
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's (main) pid, 0 while it is stopped.
    pub fn pid(&self) -> u32 {
        self.reg.pid()
    }

    /// The temporary directory.
    pub fn dir(&self) -> &std::path::Path {
        self.reg.dir()
    }

    /// Graceful stop; the server stays down.
    pub fn stop(&self) {
        let _guard = self.lock();
        self.stop_locked();
    }

    /// Starts the stopped server again on the same port and data directory.
    pub fn start_again(&self) {
        let _guard = self.lock();
        self.start_again_locked();
    }

    /// Graceful stop, then start again.
    pub fn restart(&self) {
        let _guard = self.lock();
        self.stop_locked();
        self.start_again_locked();
    }

    /// `SIGKILL` of the server and its child processes, then start again
    /// (crash recovery).
    pub fn crash_restart(&self) {
        let _guard = self.lock();
        self.crash_locked();
        self.start_again_locked();
    }

    /// `SIGKILL` of the server and its child processes; it stays down.
    pub fn crash(&self) {
        let _guard = self.lock();
        self.crash_locked();
    }

    /// `SIGSTOP` of the server and its child processes.
    pub fn freeze(&self) {
        let _guard = self.lock();
        let stopped = proctree::freeze_tree(self.running_pid("freeze"));
        if !stopped.is_empty() {
            let guard = process::start_guard(&stopped).unwrap_or_else(|e| {
                panic!("{}: cannot start the freeze guard: {e}", self.spec.name)
            });
            self.reg.set_guard(guard);
        }
    }

    /// `SIGCONT` of the server and its child processes.
    pub fn thaw(&self) {
        let _guard = self.lock();
        self.reg.end_guard();
        proctree::thaw_tree(self.running_pid("thaw"));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lifecycle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn running_pid(&self, what: &str) -> u32 {
        match self.reg.pid() {
            0 => panic!("{}: cannot {what}: the server is stopped", self.spec.name),
            pid => pid,
        }
    }

    fn crash_locked(&self) {
        let pid = self.running_pid("crash");
        self.reg.end_guard();
        let procs = proctree::kill_tree(pid);
        process::wait_exit(pid, STOP_LIMIT);
        proctree::wait_gone(&procs, STOP_LIMIT);
        self.reg.set_pid(0);
    }

    fn stop_locked(&self) {
        let pid = self.running_pid("stop");
        let mut procs = proctree::descendants(pid);
        // A frozen server would never see the signal.
        self.reg.end_guard();
        proctree::thaw_tree(pid);
        proctree::signal(pid, self.spec.stop_signal);
        if !process::wait_exit(pid, STOP_LIMIT) {
            procs.extend(proctree::kill_tree(pid));
            process::wait_exit(pid, STOP_LIMIT);
        }
        proctree::wait_gone(&procs, STOP_LIMIT);
        self.reg.set_pid(0);
    }

    fn start_again_locked(&self) {
        if self.reg.pid() != 0 {
            panic!("{}: start_again: the server is running", self.spec.name);
        }
        match self.launch() {
            Ok(()) => {}
            Err(LaunchError::PortTaken) => panic!(
                "{}: port {} was taken while the server was down\n{}",
                self.spec.name,
                self.port,
                process::log_tail(&self.log)
            ),
            Err(LaunchError::Failed(e)) => panic!("{e}"),
        }
    }

    /// Spawns the server on `self.port` and waits until it is ready.
    fn launch(&self) -> Result<(), LaunchError> {
        let failed = |detail: String| {
            LaunchError::Failed(KitError::Server {
                server: self.spec.name,
                detail,
                log_tail: process::log_tail(&self.log),
            })
        };
        let offset = fs::metadata(&self.log).map_or(0, |m| m.len());
        let out = process::open_log(&self.log).map_err(LaunchError::Failed)?;
        let err = out.try_clone().map_err(|e| failed(e.to_string()))?;
        let mut cmd = (self.spec.command)(self.port);
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let pid = process::spawn(cmd).map_err(|e| failed(format!("cannot spawn: {e}")))?;
        self.reg.set_pid(pid);
        let started = Instant::now();
        loop {
            if let Some(code) = process::try_reap(pid) {
                self.reg.set_pid(0);
                let log = fs::read(&self.log).unwrap_or_default();
                let new = String::from_utf8_lossy(log.get(offset as usize..).unwrap_or(&[]));
                if new.contains("Address already in use") {
                    return Err(LaunchError::PortTaken);
                }
                return Err(failed(format!("exited with status {code} while starting")));
            }
            let probe = (self.spec.probe)(self.port);
            if probe.is_ok() {
                return Ok(());
            }
            if started.elapsed() > READY_LIMIT {
                self.reg.terminate();
                return Err(failed(format!(
                    "not ready after {READY_LIMIT:?}: {}",
                    probe.unwrap_err()
                )));
            }
            thread::sleep(process::POLL);
        }
    }
}
