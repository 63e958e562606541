//! The process tree of a server, through `/proc`: listing a process's
//! descendants (PostgreSQL's backends are the postmaster's children), and
//! stopping, resuming, killing and awaiting them all.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use crate::process::poll_until;

/// Sends `sig` to `pid`; whether the process existed.
pub fn signal(pid: u32, sig: libc::c_int) -> bool {
    // SAFETY: plain system call.
    unsafe { libc::kill(pid as libc::pid_t, sig) == 0 }
}

/// A process as seen in `/proc/<pid>/stat`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// State letter (`R`, `S`, `T` stopped, `Z` zombie, ...).
    pub state: char,
    /// Start time since boot, in clock ticks: tells a reused pid apart.
    pub start: u64,
}

/// Reads `/proc/<pid>/stat`; `None` if there is no such process.
pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ..." where comm may hold spaces and ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcInfo {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process on the machine.
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_info)
        .collect()
}

/// The descendants of `pid` (children, their children, ...), found by
/// walking the parent links in `/proc`.
pub fn descendants(pid: u32) -> Vec<ProcInfo> {
    let mut children: HashMap<u32, Vec<ProcInfo>> = HashMap::new();
    for p in all_processes() {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        for child in children.remove(&parent).unwrap_or_default() {
            queue.push(child.pid);
            out.push(child);
        }
    }
    out
}

/// Whether the process recorded in `info` is gone (exited, possibly a zombie
/// not yet reaped, or its pid reused).
pub fn is_gone(info: &ProcInfo) -> bool {
    match proc_info(info.pid) {
        None => true,
        Some(now) => now.start != info.start || matches!(now.state, 'Z' | 'X'),
    }
}

/// Waits up to `limit` until every process of `procs` is gone.
pub fn wait_gone(procs: &[ProcInfo], limit: Duration) -> bool {
    poll_until(limit, || procs.iter().all(is_gone))
}

/// Whether `pid` is stopped (state `T`) or gone.
fn is_stopped(pid: u32) -> bool {
    match proc_info(pid) {
        None => true,
        Some(p) => matches!(p.state, 'T' | 't' | 'Z' | 'X'),
    }
}

/// Stops `pid` and all its descendants with `SIGSTOP` (the root first, so
/// it forks no new child meanwhile), waits until they are all stopped, and
/// returns the descendants.
pub fn freeze_tree(pid: u32) -> Vec<ProcInfo> {
    signal(pid, libc::SIGSTOP);
    poll_until(Duration::from_secs(5), || is_stopped(pid));
    // A child forked just before the root stopped may show up late: repeat
    // until a pass finds nothing new.
    let mut stopped: Vec<ProcInfo> = Vec::new();
    loop {
        let new: Vec<ProcInfo> = descendants(pid)
            .into_iter()
            .filter(|p| !stopped.iter().any(|s| s.pid == p.pid))
            .collect();
        if new.is_empty() {
            return stopped;
        }
        for p in &new {
            signal(p.pid, libc::SIGSTOP);
        }
        poll_until(Duration::from_secs(5), || {
            new.iter().all(|p| is_stopped(p.pid))
        });
        stopped.extend(new);
    }
}

/// Resumes `pid` and all its descendants with `SIGCONT`.
pub fn thaw_tree(pid: u32) {
    for p in descendants(pid) {
        signal(p.pid, libc::SIGCONT);
    }
    signal(pid, libc::SIGCONT);
}

/// Kills `pid` and all its descendants with `SIGKILL`, as a machine crash
/// would, and returns the descendants (to wait for with [`wait_gone`]; the
/// root is to be reaped with [`wait_exit`](crate::process::wait_exit)).
pub fn kill_tree(pid: u32) -> Vec<ProcInfo> {
    // Stop the root first so it cannot fork while its children are listed.
    signal(pid, libc::SIGSTOP);
    poll_until(Duration::from_secs(5), || is_stopped(pid));
    let descendants = descendants(pid);
    signal(pid, libc::SIGKILL);
    for p in &descendants {
        signal(p.pid, libc::SIGKILL);
    }
    descendants
}

/// The current working directory of `pid`, if readable.
pub fn cwd(pid: u32) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}
