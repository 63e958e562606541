//! The one error type of the runtime.

use std::fmt;
use std::time::Duration;

use crate::disconnect::Disconnect;

/// What went wrong outside the user's own code: the pool, the connection,
/// BEGIN/COMMIT/ROLLBACK, or the use of an option.
///
/// A `#[db_txn]` function returns `Result<T, E>` with `E: From<db_txn::Error>`;
/// errors raised by the body itself (diesel errors converted by `?`, or the
/// user's own) are returned unchanged.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A query of the body failed (lets `db_txn::Error` itself serve as the
    /// error type of simple functions: `?` converts diesel errors into it).
    Query(diesel::result::Error),
    /// No pool was installed for this connection type and the function named
    /// none with `pool = ...`.
    NoPool {
        /// The connection type, e.g. `diesel::sqlite::SqliteConnection`.
        connection: &'static str,
        /// The annotated function.
        function: &'static str,
    },
    /// A new connection could not be opened (bad URL, wrong password, server
    /// down). Returned by [`PoolBuilder::build`](crate::PoolBuilder::build).
    Connect(diesel::ConnectionError),
    /// No connection could be checked out within the checkout timeout: the pool
    /// is exhausted, or the server cannot be reached.
    Checkout {
        /// The annotated function, or `""` for a direct [`Pool::get`](crate::Pool::get).
        function: &'static str,
        /// The checkout timeout that ran out.
        timeout: Duration,
        /// Connections open / idle when it gave up.
        state: (u32, u32),
        /// Why the last connection attempt or health check failed, if one did.
        last_error: Option<String>,
    },
    /// The connection was lost before COMMIT was sent, and it was still lost
    /// after the configured number of retries. Nothing was committed.
    Disconnected {
        /// The annotated function.
        function: &'static str,
        /// How many times the body was started.
        attempts: u32,
        /// What the connection was found to be.
        kind: Disconnect,
        /// The driver's error.
        source: diesel::result::Error,
    },
    /// The connection was lost while COMMIT was in flight: the transaction may
    /// or may not have been committed. Never retried; check the data (for
    /// example by a unique operation id) before doing the work again.
    CommitUnknown {
        /// The annotated function.
        function: &'static str,
        /// The driver's error.
        source: diesel::result::Error,
    },
    /// BEGIN, COMMIT, ROLLBACK, SAVEPOINT or a session setting failed for a
    /// reason other than a lost connection (for example a serialization
    /// failure reported at COMMIT).
    Transaction {
        /// The annotated function.
        function: &'static str,
        /// Which step failed: `"begin"`, `"commit"`, `"rollback"`, `"savepoint"`.
        step: &'static str,
        /// The driver's error.
        source: diesel::result::Error,
    },
    /// The backend cannot honour an option of the function.
    Unsupported {
        /// The annotated function.
        function: &'static str,
        /// The backend, e.g. `"SQLite"`.
        backend: &'static str,
        /// What cannot be honoured, and what to do instead.
        detail: &'static str,
    },
    /// [`with_connection`](crate::with_connection) found no connection lent
    /// on this thread.
    NoSession {
        /// The connection type asked for.
        connection: &'static str,
    },
    /// The function was called while another `#[db_txn]` call on this thread
    /// holds the connection of the same pool and has not lent it with
    /// [`db_txn::lend`](crate::lend).
    ConnectionBorrowed {
        /// The function that was called.
        function: &'static str,
        /// The function whose body holds the connection.
        holder: &'static str,
    },
    /// A joining call asked for transaction settings that differ from the
    /// transaction it joins.
    NestedMismatch {
        /// The function that was called.
        function: &'static str,
        /// The function that owns the transaction.
        holder: &'static str,
        /// The setting that differs.
        setting: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoPool { connection, function } => write!(
                f,
                "no db_txn pool for {connection} (called from `{function}`): build one with \
                 `db_txn::Pool::<{short}>::builder(url).build()?` and register it with \
                 `db_txn::install(pool)`, or name it with `#[db_txn(pool = ...)]`",
                short = short_type_name(connection),
            ),
            Error::Query(e) => write!(f, "{e}"),
            Error::Connect(e) => write!(f, "cannot open a database connection: {e}"),
            Error::NoSession { connection } => write!(
                f,
                "no {connection} is lent on this thread: call this inside `db_txn::lend(conn, || ...)`"
            ),
            Error::Checkout { function, timeout, state, last_error } => {
                write!(f, "no database connection within {timeout:?}")?;
                if !function.is_empty() {
                    write!(f, " for `{function}`")?;
                }
                write!(f, " ({} open, {} idle)", state.0, state.1)?;
                match last_error {
                    Some(e) => write!(f, "; last connection error: {e}"),
                    None => write!(f, "; the pool is exhausted: every connection is in use"),
                }
            }
            Error::Disconnected { function, attempts, kind, source } => write!(
                f,
                "`{function}`: connection lost ({kind}) on each of {attempts} attempt(s), \
                 nothing committed: {source}"
            ),
            Error::CommitUnknown { function, source } => write!(
                f,
                "`{function}`: connection lost during COMMIT, the transaction may or may not \
                 have been committed: {source}"
            ),
            Error::Transaction { function, step, source } => {
                write!(f, "`{function}`: {step} failed: {source}")
            }
            Error::Unsupported { function, backend, detail } => {
                write!(f, "`{function}`: {backend} {detail}")
            }
            Error::ConnectionBorrowed { function, holder } => write!(
                f,
                "`{function}` was called while `{holder}` holds the connection of the same pool; \
                 to join its transaction, call it inside `db_txn::lend(conn, || ...)` in \
                 `{holder}`, or give `{function}` its own transaction with \
                 `#[db_txn(requires_new)]`"
            ),
            Error::NestedMismatch { function, holder, setting } => write!(
                f,
                "`{function}` joins the transaction of `{holder}` but asks for a different \
                 {setting}; set it on `{holder}`, or give `{function}` its own transaction \
                 with `#[db_txn(requires_new)]`"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect(e) => Some(e),
            Error::Query(e) => Some(e),
            Error::Disconnected { source, .. }
            | Error::CommitUnknown { source, .. }
            | Error::Transaction { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// `true` when the transaction may have been committed although the call
    /// failed ([`Error::CommitUnknown`]).
    pub fn is_commit_unknown(&self) -> bool {
        matches!(self, Error::CommitUnknown { .. })
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        Error::Query(e)
    }
}

/// Lets functions that return diesel's `QueryResult<T>` carry the attribute.
/// Lossy: errors of the body and the driver's own come back as they were;
/// the others become `DatabaseError` with this error's message
/// (`ClosedConnection` for a lost connection or an unknown commit outcome).
/// Use your own error type to match on [`Error`]'s variants.
impl From<Error> for diesel::result::Error {
    fn from(e: Error) -> Self {
        use diesel::result::DatabaseErrorKind as Kind;
        match e {
            Error::Query(source)
            | Error::Disconnected { source, .. }
            | Error::Transaction { source, .. } => source,
            other => {
                let kind = if other.is_commit_unknown() {
                    Kind::ClosedConnection
                } else {
                    Kind::Unknown
                };
                diesel::result::Error::DatabaseError(kind, Box::new(other.to_string()))
            }
        }
    }
}

fn short_type_name(full: &str) -> &str {
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pool_message_names_the_type_and_the_fix() {
        let e = Error::NoPool {
            connection: "diesel::sqlite::connection::SqliteConnection",
            function: "app::create_user",
        };
        let msg = e.to_string();
        assert!(
            msg.contains("diesel::sqlite::connection::SqliteConnection"),
            "{msg}"
        );
        assert!(msg.contains("Pool::<SqliteConnection>::builder"), "{msg}");
        assert!(msg.contains("db_txn::install"), "{msg}");
    }

    #[test]
    fn exhausted_pool_says_so() {
        let e = Error::Checkout {
            function: "f",
            timeout: Duration::from_millis(250),
            state: (4, 0),
            last_error: None,
        };
        assert_eq!(
            e.to_string(),
            "no database connection within 250ms for `f` (4 open, 0 idle); the pool is \
             exhausted: every connection is in use"
        );
    }
}
