//! Why SQLite could not open a database file, in words that name the path.
//!
//! SQLite reports every failure to open as "unable to open database file",
//! whatever the cause and without the path (issue 9). After a failure the
//! pool looks at the file system itself: a missing directory, a path
//! component that is a file, a directory where the file should be, or
//! permissions. It only reads metadata and asks `access(2)`: it never
//! creates anything.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use diesel::ConnectionError;

/// `error` of opening `url`, with the file and the cause when it is a file.
pub(super) fn explain(url: &str, error: ConnectionError) -> ConnectionError {
    let ConnectionError::BadConnection(message) = &error else {
        return error;
    };
    match super::url::file_path(url) {
        Some(path) => ConnectionError::BadConnection(format!(
            "{message} {}: {}",
            shown(&path),
            cause(&path, "open or create it")
        )),
        None => error,
    }
}

/// A failed `PRAGMA journal_mode = WAL` on `path`: WAL keeps two files next
/// to the database (`-wal`, `-shm`) that must be created.
#[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
pub(super) fn explain_wal(message: &str, path: &Path) -> String {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    format!(
        "{message}: `PRAGMA journal_mode = WAL` on {} needs the file {}: {} (turn WAL off \
         with `sqlite_wal(false)`, or fix the directory)",
        shown(path),
        shown(&wal),
        cause(&wal, "create it")
    )
}

/// The path in backquotes, and where a relative one is resolved.
fn shown(path: &Path) -> String {
    match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => {
            format!("`{}` (in {})", path.display(), cwd.display())
        }
        _ => format!("`{}`", path.display()),
    }
}

/// What keeps this process from opening (or creating) `path`.
fn cause(path: &Path, what: &str) -> String {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => "it is a directory, not a database file".to_owned(),
        Ok(_) => match access(path, libc::R_OK | libc::W_OK) {
            Err(e) => format!("permission denied: this process may not read and write it ({e})"),
            Ok(()) => {
                format!("the file exists and is readable and writable; SQLite could not {what}")
            }
        },
        Err(e)
            if e.kind() != io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ENOTDIR) =>
        {
            format!("{e}")
        }
        Err(_) => match std::fs::metadata(dir) {
            Ok(meta) if !meta.is_dir() => format!("`{}` is not a directory", dir.display()),
            Ok(_) => match access(dir, libc::W_OK | libc::X_OK) {
                Err(e) => format!(
                    "permission denied: this process may not create files in `{}` ({e})",
                    dir.display()
                ),
                Ok(()) => format!("SQLite could not {what} in `{}`", dir.display()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                format!(
                    "the directory `{}` does not exist (create it first)",
                    dir.display()
                )
            }
            Err(_) => match first_non_directory(dir) {
                Some(file) => format!("`{}` is not a directory", file.display()),
                None => format!("cannot reach the directory `{}`", dir.display()),
            },
        },
    }
}

/// The first component of `dir` that exists and is not a directory.
fn first_non_directory(dir: &Path) -> Option<&Path> {
    dir.ancestors()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_dir()))
}

fn access(path: &Path, mode: libc::c_int) -> io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    if unsafe { libc::access(c.as_ptr(), mode) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explained(url: &str) -> String {
        match explain(url, ConnectionError::BadConnection("Unable to open".into())) {
            ConnectionError::BadConnection(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_path_and_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope").join("app.db");
        let m = explained(missing.to_str().unwrap());
        assert!(m.starts_with("Unable to open `"), "{m}");
        assert!(m.contains(missing.to_str().unwrap()), "{m}");
        assert!(m.contains("nope` does not exist"), "{m}");

        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let under = file.join("app.db");
        let m = explained(&format!("file:{}", under.display()));
        assert!(
            m.contains(&format!("`{}` is not a directory", file.display())),
            "{m}"
        );
        let deeper = file.join("a").join("app.db");
        let m = explained(deeper.to_str().unwrap());
        assert!(
            m.contains(&format!("`{}` is not a directory", file.display())),
            "{m}"
        );

        let m = explained(dir.path().to_str().unwrap());
        assert!(m.contains("is a directory"), "{m}");

        let m = explained("rel/app.db");
        assert!(
            m.contains("`rel/app.db` (in /"),
            "a relative path says where: {m}"
        );
    }

    #[test]
    fn memory_and_other_errors_are_left_alone() {
        assert_eq!(explained(":memory:"), "Unable to open");
        let nul = explain(
            "x.db",
            ConnectionError::InvalidCString(CString::new("a\0b").unwrap_err()),
        );
        assert!(matches!(nul, ConnectionError::InvalidCString(_)));
    }
}
