//! Temporary directories of the kit's servers, and their removal together
//! with the server process: when the handle is dropped, at `exit()` (for
//! the never-dropped `shared()` servers; the test harness ends through
//! `exit()`), or, for what a killed test process left behind, on the kit's
//! next run.
//!
//! The directories live in [`base_dir`]: `$DB_TXN_KIT_DIR` if set, else the
//! RAM-backed `/dev/shm` (creating files there is some 20 times faster than
//! on this machine's disk, where copying a PostgreSQL data directory takes
//! a second), else the system's temporary directory.
//!
//! Each directory is named `db_txn_kit-<pid>.<start>-<seq>-<kind>` after
//! the process that owns it (pid and start time, so a reused pid is told
//! apart). The first time a process creates one, it looks for directories
//! whose owner is gone, kills the processes still working in them (their
//! current directory is inside: a server frozen with `SIGSTOP` when its test
//! process was killed survives its parent), releases a PostgreSQL System V
//! shared-memory segment left behind, and removes them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::error::KitError;
use crate::process;
use crate::proctree;

/// Prefix of the kit's temporary directories.
const PREFIX: &str = "db_txn_kit-";

/// A temporary directory and the server process running in it (if any).
/// Dropping it stops the process quickly and removes the directory.
#[derive(Debug)]
pub struct Registration {
    entry: Arc<Entry>,
}

/// What the `atexit` handler needs to clean up, without taking any lock a
/// test thread might hold.
#[derive(Debug)]
struct Entry {
    /// The server's pid, 0 while none runs.
    pid: AtomicU32,
    /// The guard of the frozen server's child processes, 0 if none (see
    /// [`process::start_guard`]).
    guard: AtomicU32,
    /// The signal that stops the server fastest and cleanly enough.
    quick_signal: libc::c_int,
    /// The temporary directory.
    dir: PathBuf,
}

/// Where the kit's directories go: `$DB_TXN_KIT_DIR`, else `/dev/shm` if
/// it is a writable directory, else the system's temporary directory.
pub fn base_dir() -> PathBuf {
    static BASE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        if let Some(dir) = std::env::var_os("DB_TXN_KIT_DIR") {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        // SAFETY: plain system call on a NUL-terminated path.
        let writable = unsafe { libc::access(c"/dev/shm".as_ptr(), libc::W_OK | libc::X_OK) } == 0;
        if shm.is_dir() && writable {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
    .clone()
}

/// The process that registered the `atexit` handler: a child forked from
/// it inherits the handler but must not stop the parent's servers.
static OWNER: AtomicU32 = AtomicU32::new(0);

/// Everything registered and not yet dropped.
static REGISTRY: Mutex<Vec<Arc<Entry>>> = Mutex::new(Vec::new());

/// Creates a fresh temporary directory for a server of `kind` and registers
/// it for cleanup. `quick_signal` is what stops that server at drop or exit
/// (e.g. `SIGKILL` for MariaDB, `SIGQUIT` for PostgreSQL, which then frees
/// its shared memory).
pub fn register(kind: &str, quick_signal: libc::c_int) -> Result<Registration, KitError> {
    static ATEXIT: Once = Once::new();
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    ATEXIT.call_once(|| {
        OWNER.store(std::process::id(), Ordering::SeqCst);
        reap_stale();
        // SAFETY: registers a plain `extern "C"` function.
        unsafe { libc::atexit(at_exit) };
    });
    let me = std::process::id();
    let start = proctree::proc_info(me).map_or(0, |p| p.start);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = base_dir().join(format!("{PREFIX}{me}.{start}-{seq}-{kind}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| KitError::io(format!("create {}", dir.display()), e))?;
    let entry = Arc::new(Entry {
        pid: AtomicU32::new(0),
        guard: AtomicU32::new(0),
        quick_signal,
        dir,
    });
    lock_registry().push(entry.clone());
    Ok(Registration { entry })
}

impl Registration {
    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        &self.entry.dir
    }

    /// The server's pid, 0 while none runs.
    pub fn pid(&self) -> u32 {
        self.entry.pid.load(Ordering::SeqCst)
    }

    /// Records the pid of the server now running (0: none).
    pub fn set_pid(&self, pid: u32) {
        self.entry.pid.store(pid, Ordering::SeqCst);
    }

    /// Records the guard of the frozen server's child processes, ending
    /// the previous one.
    pub fn set_guard(&self, guard: u32) {
        match self.entry.guard.swap(guard, Ordering::SeqCst) {
            0 => {}
            old => process::end_guard(old),
        }
    }

    /// Ends the guard of the frozen server's child processes, if any.
    pub fn end_guard(&self) {
        self.set_guard(0);
    }

    /// Stops the server at once with the quick signal (`SIGKILL` if that
    /// does not work within 10 s), reaps it and waits for its child
    /// processes to be gone.
    pub fn terminate(&self) {
        self.entry.terminate();
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.entry.terminate();
        let _ = fs::remove_dir_all(&self.entry.dir);
        lock_registry().retain(|e| !Arc::ptr_eq(e, &self.entry));
    }
}

impl Entry {
    fn terminate(&self) {
        match self.guard.swap(0, Ordering::SeqCst) {
            0 => {}
            guard => process::end_guard(guard),
        }
        let pid = self.pid.load(Ordering::SeqCst);
        if pid == 0 {
            return;
        }
        let mut procs = proctree::descendants(pid);
        proctree::thaw_tree(pid);
        proctree::signal(pid, self.quick_signal);
        if !process::wait_exit(pid, Duration::from_secs(10)) {
            procs.extend(proctree::kill_tree(pid));
            process::wait_exit(pid, Duration::from_secs(5));
        }
        proctree::wait_gone(&procs, Duration::from_secs(5));
        self.pid.store(0, Ordering::SeqCst);
    }
}

fn lock_registry() -> std::sync::MutexGuard<'static, Vec<Arc<Entry>>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs at `exit()`: stops every server still registered (the `shared()`
/// ones, and any a test leaked) and removes their directories.
extern "C" fn at_exit() {
    if OWNER.load(Ordering::SeqCst) != std::process::id() {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        let entries: Vec<Arc<Entry>> = std::mem::take(&mut *lock_registry());
        for entry in entries {
            entry.terminate();
            let _ = fs::remove_dir_all(&entry.dir);
        }
    });
}

/// Removes the directories (and processes) left by kit processes that are
/// gone, typically killed.
fn reap_stale() {
    let Ok(list) = fs::read_dir(base_dir()) else {
        return;
    };
    for entry in list.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(parse_owner) else {
            continue;
        };
        let alive = proctree::proc_info(owner.0).is_some_and(|p| p.start == owner.1);
        if !alive {
            reap_dir(&entry.path());
        }
    }
}

/// `(pid, start)` of the owner from a directory name of the kit.
fn parse_owner(name: &str) -> Option<(u32, u64)> {
    let rest = name.strip_prefix(PREFIX)?;
    let owner = rest.split('-').next()?;
    let (pid, start) = owner.split_once('.')?;
    Some((pid.parse().ok()?, start.parse().ok()?))
}

/// Kills the processes working in `dir`, frees a PostgreSQL shared-memory
/// segment recorded there, and removes it.
fn reap_dir(dir: &Path) {
    let inside: Vec<proctree::ProcInfo> = proctree::all_processes()
        .into_iter()
        .filter(|p| proctree::cwd(p.pid).is_some_and(|c| c.starts_with(dir)))
        .collect();
    for p in &inside {
        proctree::signal(p.pid, libc::SIGKILL);
    }
    proctree::wait_gone(&inside, Duration::from_secs(5));
    if let Ok(subdirs) = fs::read_dir(dir) {
        for sub in subdirs.flatten() {
            release_pg_shm(&sub.path().join("postmaster.pid"));
        }
    }
    let _ = fs::remove_dir_all(dir);
}

/// Removes the System V segment named on line 7 of a PostgreSQL
/// `postmaster.pid` ("key id"), if the postmaster of line 1 created it and
/// nothing is attached to it any more.
fn release_pg_shm(pid_file: &Path) {
    let Ok(text) = fs::read_to_string(pid_file) else {
        return;
    };
    let lines: Vec<&str> = text.lines().collect();
    let postmaster = lines
        .first()
        .and_then(|l| l.trim().parse::<libc::pid_t>().ok());
    let id = lines
        .get(6)
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|id| id.parse::<libc::c_int>().ok());
    let (Some(postmaster), Some(id)) = (postmaster, id) else {
        return;
    };
    // SAFETY: shmid_ds is plain data that IPC_STAT fills in.
    unsafe {
        let mut ds: libc::shmid_ds = std::mem::zeroed();
        if libc::shmctl(id, libc::IPC_STAT, &mut ds) == 0
            && ds.shm_cpid == postmaster
            && ds.shm_nattch == 0
        {
            libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}
