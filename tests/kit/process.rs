//! Spawning server processes (and their setup tools) so that they die with
//! the test process, reaping them, and polling.
//!
//! # Why the servers die when the test process is killed
//!
//! Every process the kit starts gets `PR_SET_PDEATHSIG(SIGKILL)`, set in
//! `pre_exec` (after `Command::uid`/`gid` took effect, since a change of
//! credentials clears it). The kernel sends that signal when the *thread*
//! that forked the child exits, not when the process does, and test threads
//! come and go. So all forks happen on one dedicated thread, started on
//! first use and never ended: it exits only with the process, whether the
//! process returns, calls `exit()`, panics out, or is killed by any signal,
//! including `SIGKILL`, which no handler or `atexit` can catch. A child that
//! finds, right after `prctl`, that its parent is already gone (the test
//! process died during the fork) exits at once instead of running orphaned.
//!
//! The alternative of a watchdog process polling for the test process costs
//! a process per server and leaves a window; a new PID namespace needs
//! privileges. The kernel's mechanism has neither problem. It reaches only
//! the processes the kit forked itself: a server's own children normally
//! exit when they see their parent die, except while frozen (`SIGSTOP`),
//! which is why a frozen server's children get a guard ([`start_guard`]).
//! Nor does it clean up: the temporary directory of a killed test process
//! stays, and [`crate::cleanup`] removes such leftovers the next time the
//! kit runs.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::KitError;
use crate::proctree::{self, ProcInfo};

/// How often the kit polls for a condition (readiness, exit, ...).
pub const POLL: Duration = Duration::from_millis(10);

/// Spawns `cmd` from the kit's spawner thread with `PR_SET_PDEATHSIG` set
/// to `SIGKILL`, and returns the child's pid. The child must be reaped with
/// [`wait_exit`] (or [`wait_exit_status`]).
pub fn spawn(cmd: Command) -> io::Result<u32> {
    spawn_child(cmd).map(|child| child.id())
}

/// [`spawn`], returning the [`Child`] for its piped standard streams.
/// Dropping the `Child` neither kills nor reaps the process: reap it with
/// [`wait_exit`].
pub fn spawn_child(cmd: Command) -> io::Result<Child> {
    spawn_with_death_signal(cmd, libc::SIGKILL)
}

/// [`spawn`] with another signal sent to the child when the test process
/// dies.
fn spawn_with_death_signal(mut cmd: Command, death_signal: libc::c_int) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (prctl, getppid) and no allocation.
    unsafe {
        cmd.pre_exec(move || {
            let sig = death_signal as libc::c_ulong;
            if libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let (reply, answer) = mpsc::channel();
    let (owner, queue) = spawner();
    if *owner != std::process::id() {
        // The spawner thread did not survive a fork.
        return Err(io::Error::other(
            "the kit cannot start servers in a forked child",
        ));
    }
    queue
        .send(Job { cmd, reply })
        .map_err(|_| io::Error::other("the kit's spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| io::Error::other("the kit's spawner thread is gone"))?
}

/// A command for the spawner thread, and where to send its result.
struct Job {
    cmd: Command,
    reply: mpsc::Sender<io::Result<Child>>,
}

/// The pid of the process that started the spawner thread, and the
/// thread's queue; the thread lives as long as that process.
fn spawner() -> &'static (u32, mpsc::Sender<Job>) {
    static SPAWNER: OnceLock<(u32, mpsc::Sender<Job>)> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("db_txn_kit-spawner".into())
            .spawn(move || {
                // Ends only if every sender is gone, and the static one
                // never is: this thread lives until the process exits.
                for mut job in rx {
                    // Dropping `Child` neither kills nor reaps: the pid is
                    // reaped by `wait_exit`.
                    let _ = job.reply.send(job.cmd.spawn());
                }
            })
            .expect("start the kit's spawner thread");
        (std::process::id(), tx)
    })
}

/// Runs a setup tool to completion (with a time limit), its input read from
/// the file `input` (if any) and its output going to `log`. Fails with the
/// log's tail if the tool fails.
pub fn run_tool(
    server: &'static str,
    mut cmd: Command,
    input: Option<&Path>,
    log: &Path,
    limit: Duration,
) -> Result<(), KitError> {
    let out = open_log(log)?;
    let err = out
        .try_clone()
        .map_err(|e| KitError::io("clone log file", e))?;
    let stdin = match input {
        Some(path) => fs::File::open(path)
            .map_err(|e| KitError::io(format!("open {}", path.display()), e))?
            .into(),
        None => std::process::Stdio::null(),
    };
    cmd.stdin(stdin).stdout(out).stderr(err);
    let what = format!("{cmd:?}");
    let pid = spawn(cmd).map_err(|e| KitError::io(format!("run {what}"), e))?;
    match wait_exit_status(pid, limit) {
        Some(0) => Ok(()),
        status => {
            if status.is_none() {
                proctree::kill_tree(pid);
                wait_exit(pid, Duration::from_secs(5));
            }
            Err(KitError::Server {
                server,
                detail: format!("{what} failed ({status:?})"),
                log_tail: log_tail(log),
            })
        }
    }
}

/// Opens (creating or appending) a log file for a child's output.
pub fn open_log(path: &Path) -> Result<fs::File, KitError> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| KitError::io(format!("open {}", path.display()), e))
}

/// The last 40 lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Finds an executable `name` in `dirs`, then in `$PATH`.
pub fn find_binary(
    name: &str,
    dirs: &[PathBuf],
    package: &'static str,
) -> Result<PathBuf, KitError> {
    let path_dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    let all: Vec<&PathBuf> = dirs.iter().chain(path_dirs.iter()).collect();
    for dir in &all {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
    }
    Err(KitError::MissingBinary {
        binary: name.to_string(),
        searched: all
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":"),
        package,
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Polls `done` every [`POLL`] until it returns true (then true) or `limit`
/// has passed (then false).
pub fn poll_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// Reaps the child `pid` if it has exited: `Some(exit code, or 128 + signal)`.
pub fn try_reap(pid: u32) -> Option<i32> {
    let mut status = 0;
    // SAFETY: plain system call on our own child.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    if r == pid as libc::pid_t {
        if libc::WIFEXITED(status) {
            Some(libc::WEXITSTATUS(status))
        } else {
            Some(128 + libc::WTERMSIG(status))
        }
    } else if r < 0 {
        // Not our child (any more): treat as exited.
        Some(-1)
    } else {
        None
    }
}

/// Waits up to `limit` for the child `pid` to exit and reaps it; its exit
/// code (128 + signal if killed), or `None` if it is still running.
pub fn wait_exit_status(pid: u32, limit: Duration) -> Option<i32> {
    let mut status = None;
    poll_until(limit, || {
        status = try_reap(pid);
        status.is_some()
    });
    status
}

/// Waits up to `limit` for the child `pid` to exit and reaps it; whether it
/// did.
pub fn wait_exit(pid: u32, limit: Duration) -> bool {
    wait_exit_status(pid, limit).is_some()
}

/// Starts a guard that kills `procs` with `SIGKILL` if the test process
/// dies, and returns its pid (end it with [`end_guard`]).
///
/// Needed for the stopped child processes of a frozen server: its main
/// process dies by its `PR_SET_PDEATHSIG`, but children that it forked
/// itself have no such setting, and a stopped PostgreSQL backend can never
/// notice that its postmaster died. The guard is a shell that gets
/// `SIGTERM` when the test process dies and then kills them. While they are
/// stopped their pids cannot be reused.
pub fn start_guard(procs: &[ProcInfo]) -> io::Result<u32> {
    let pids: Vec<String> = procs.iter().map(|p| p.pid.to_string()).collect();
    // `sleep & wait`: a trapped signal interrupts `wait` at once, while a
    // foreground `sleep` would delay the trap until it ends.
    let script = format!(
        "trap 'kill -KILL {} 2>/dev/null; exit 0' TERM HUP; \
         while :; do sleep 1 & wait $!; done",
        pids.join(" ")
    );
    let mut cmd = Command::new("/bin/sh");
    // A process group of its own: in the test process's group, it could get
    // the SIGHUP that the kernel sends to a group orphaned while one of its
    // members (the frozen server) is stopped, and die before acting.
    cmd.process_group(0)
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    spawn_with_death_signal(cmd, libc::SIGTERM).map(|child| child.id())
}

/// Ends a guard from [`start_guard`] without letting it act.
pub fn end_guard(guard: u32) {
    proctree::signal(guard, libc::SIGKILL);
    wait_exit(guard, Duration::from_secs(5));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_binary_and_package() {
        let err = find_binary("db_txn_no_such_server", &[], "some-package").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`db_txn_no_such_server`"), "{msg}");
        assert!(msg.contains("apt-get install some-package"), "{msg}");
    }
}
