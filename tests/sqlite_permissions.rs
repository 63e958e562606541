//! A SQLite file the process may not create, or whose WAL files it may not
//! create, gives an error that names the path and says "permission denied"
//! (issue 9), not SQLite's bare "unable to open database file".
//!
//! Root ignores file permissions, so under root the checks run in a child
//! process that first becomes `nobody`. One test per binary, so that no other
//! test thread is running when it forks.
#![cfg(feature = "sqlite")]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use db_txn::{Error, Pool};
use diesel::SqliteConnection;

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

/// The checks, as a user who may not write in `locked` (which holds a
/// database file `existing.db` that anyone may write).
fn checks(locked: &Path) -> Result<(), String> {
    let new = locked.join("new.db");
    let err = match Pool::<SqliteConnection>::new(new.to_str().unwrap_or_default()) {
        Ok(_) => return Err(format!("{} opened", new.display())),
        Err(e) => e,
    };
    let text = chain(&err);
    eprintln!("{text}");
    let wanted = format!(
        "permission denied: this process may not create files in `{}`",
        locked.display()
    );
    if !matches!(err, Error::Connect { .. }) || !text.contains(&wanted) {
        return Err(format!("creating a database: {text}"));
    }

    // The file opens, but WAL needs `existing.db-wal` next to it.
    let existing = locked.join("existing.db");
    let err = match Pool::<SqliteConnection>::new(existing.to_str().unwrap_or_default()) {
        Ok(_) => return Err(format!("{} opened in WAL mode", existing.display())),
        Err(e) => e,
    };
    let text = chain(&err);
    let wal = format!("{}-wal", existing.display());
    if !matches!(err, Error::Setup { .. })
        || !text.contains(&wal)
        || !text.contains("permission denied")
        || !text.contains("sqlite_wal(false)")
    {
        return Err(format!("WAL on a read-only directory: {text}"));
    }
    eprintln!("{text}");
    Ok(())
}

#[test]
fn permission_denied_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let existing = locked.join("existing.db");
    std::fs::write(&existing, b"").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        checks(&locked).unwrap_or_else(|e| panic!("{e}"));
    } else {
        // SAFETY: the child only runs the checks and then `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            const NOBODY: libc::uid_t = 65534;
            // SAFETY: plain system calls; the group first, while still root.
            let dropped = unsafe { libc::setgid(NOBODY) == 0 && libc::setuid(NOBODY) == 0 };
            let code = match (dropped, dropped.then(|| checks(&locked))) {
                (true, Some(Ok(()))) => 0,
                (_, Some(Err(e))) => {
                    eprintln!("as nobody: {e}");
                    1
                }
                _ => {
                    eprintln!("cannot become nobody");
                    2
                }
            };
            // SAFETY: leaves the child without running the harness's exit path.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the checks failed as nobody (status {status}; see stderr)"
        );
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}
