//! The kit's error type.

use std::fmt;
use std::io;

/// Why the kit could not provide a server.
#[derive(Debug)]
pub enum KitError {
    /// A server binary is not installed.
    MissingBinary {
        /// The binary looked for, e.g. `mariadbd`.
        binary: String,
        /// Where it was looked for.
        searched: String,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// An operating-system call failed.
    Io {
        /// What the kit was doing.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A server or a setup tool failed, or did not become ready in time.
    Server {
        /// The server, e.g. `MariaDB`.
        server: &'static str,
        /// What went wrong.
        detail: String,
        /// The end of the server's or tool's log.
        log_tail: String,
    },
    /// An SQL statement of the kit failed.
    Sql {
        /// The statement or the step.
        what: String,
        /// The driver's message.
        detail: String,
    },
}

impl KitError {
    /// Wraps an I/O error with what the kit was doing.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        KitError::Io {
            what: what.into(),
            source,
        }
    }
}

impl fmt::Display for KitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KitError::MissingBinary {
                binary,
                searched,
                package,
            } => write!(
                f,
                "server binary `{binary}` not found (searched {searched}); \
                 install the Debian package `{package}` (apt-get install {package})"
            ),
            KitError::Io { what, source } => write!(f, "{what}: {source}"),
            KitError::Server {
                server,
                detail,
                log_tail,
            } => write!(f, "{server}: {detail}\n--- log tail ---\n{log_tail}"),
            KitError::Sql { what, detail } => write!(f, "SQL `{what}` failed: {detail}"),
        }
    }
}

impl std::error::Error for KitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KitError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
