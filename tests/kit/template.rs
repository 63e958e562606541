//! Per-process templates of freshly initialized data directories.
//!
//! Initializing a data directory (`mariadb-install-db`, `initdb`) takes most
//! of a server's start (0.5–1.5 s); copying an initialized one takes about
//! a tenth of that. So each test process initializes one directory per kind
//! of server, the first time it needs one, and every server it starts gets
//! a copy. The template lives in a kit directory of its own, removed at
//! exit like the servers'.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::cleanup::{self, Registration};
use crate::error::KitError;

/// An initialized data directory to copy.
pub(crate) struct Template {
    /// Keeps the directory registered for removal at exit.
    reg: Registration,
}

/// What a failed template build left to say (a `KitError` is not `Clone`).
type Built = Result<Template, String>;

impl Template {
    /// The template's data directory.
    fn data(&self) -> PathBuf {
        self.reg.dir().join("data")
    }

    /// Returns the template in `cell`, building it on first use: `build`
    /// gets the template's directory and must initialize `<dir>/data`.
    pub fn get(
        cell: &'static OnceLock<Built>,
        server: &'static str,
        kind: &str,
        build: impl FnOnce(&Path) -> Result<(), KitError>,
    ) -> Result<&'static Template, KitError> {
        let built = cell.get_or_init(|| {
            let reg = cleanup::register(kind, libc::SIGKILL).map_err(|e| e.to_string())?;
            build(reg.dir()).map_err(|e| e.to_string())?;
            Ok(Template { reg })
        });
        built.as_ref().map_err(|detail| KitError::Server {
            server,
            detail: format!("could not initialize a data directory: {detail}"),
            log_tail: String::new(),
        })
    }

    /// Copies the template's data directory to `dest` (which must not
    /// exist), owned by `owner` (uid, gid) if given.
    pub fn copy_to(&self, dest: &Path, owner: Option<(u32, u32)>) -> Result<(), KitError> {
        copy_tree(&self.data(), dest, owner)
            .map_err(|e| KitError::io(format!("copy the template to {}", dest.display()), e))
    }
}

/// Copies the directory `src` to `dest` recursively, keeping permission
/// bits, and giving everything to `owner` if given.
fn copy_tree(src: &Path, dest: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    fs::create_dir(dest)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dest.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            copy_tree(&from, &to, owner)?;
        } else {
            // Copies the permission bits too.
            fs::copy(&from, &to)?;
            chown(&to, owner)?;
        }
    }
    let mode = fs::metadata(src)?.permissions().mode();
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))?;
    chown(dest, owner)
}

fn chown(path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
        None => Ok(()),
    }
}
