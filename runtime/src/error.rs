//! The one error type of the runtime, and the small types its fields use.
//!
//! Each variant's message is next to it in `Display`. A variant that wraps a
//! cause returns it from `source()` and does not repeat it in its own
//! message, so `anyhow`/`eyre` chains print every cause once.

use std::fmt;
use std::time::Duration;

use crate::backend::Backend;
use crate::classify::Disconnect;

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
    /// Transparent: its message and source are the diesel error's.
    Query(diesel::result::Error),
    /// No pool was installed for this connection type and the function named
    /// none with `pool = ...`.
    NoPool {
        /// The connection type, e.g. `diesel::sqlite::SqliteConnection`.
        connection: &'static str,
        /// The annotated function.
        function: &'static str,
    },
    /// The pool's URL is not one its backend takes: another backend's URL
    /// (`mysql://...` for a SQLite pool), or a name the driver would misread
    /// (a SQLite pool given `not a url`). Returned by
    /// [`PoolBuilder::build`](crate::PoolBuilder::build), and by every
    /// checkout of a pool built with
    /// [`build_lazy`](crate::PoolBuilder::build_lazy). Nothing is opened or
    /// created.
    BadUrl {
        /// The backend of the pool.
        backend: Backend,
        /// The URL, without its password.
        url: String,
        /// Why it is refused, and what the backend takes.
        reason: String,
    },
    /// A new connection could not be opened (bad URL, wrong password, server
    /// down). Returned by [`PoolBuilder::build`](crate::PoolBuilder::build).
    Connect {
        /// The database.
        backend: Backend,
        /// Where the pool connects, without the password.
        server: String,
        /// The driver's error.
        source: diesel::ConnectionError,
    },
    /// A new connection was opened but its set-up failed: the pool's settings,
    /// the `on_connect` hook, or reading the server's settings. Returned by
    /// [`PoolBuilder::build`](crate::PoolBuilder::build).
    Setup {
        /// The database.
        backend: Backend,
        /// Where the pool connects, without the password.
        server: String,
        /// The driver's error.
        source: diesel::result::Error,
    },
    /// No connection could be checked out within the checkout timeout: every
    /// connection was in use, or the server did not give one.
    Checkout {
        /// The annotated function; `None` for a direct [`Pool::get`](crate::Pool::get).
        function: Option<&'static str>,
        /// The checkout timeout that ran out.
        timeout: Duration,
        /// The pool when it gave up.
        state: PoolState,
        /// Where the pool connects, without the password.
        server: String,
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
    /// example by a unique operation id) before doing the work again. With
    /// `resolve_commit` it comes only when the server could not tell within
    /// the pool's `commit_resolution_timeout`.
    CommitUnknown {
        /// The annotated function.
        function: &'static str,
        /// The driver's error.
        source: diesel::result::Error,
    },
    /// BEGIN, COMMIT, ROLLBACK, a SAVEPOINT or the session reset failed for a
    /// reason other than a lost connection (for example a serialization
    /// failure reported at COMMIT).
    Transaction {
        /// The annotated function.
        function: &'static str,
        /// Which step failed.
        step: Step,
        /// The driver's error.
        source: diesel::result::Error,
    },
    /// The backend cannot honour an option of the function.
    Unsupported {
        /// The annotated function.
        function: &'static str,
        /// The database.
        backend: Backend,
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
    /// The process forked inside the call's transaction, and this is the
    /// child: the transaction and its connection are the parent's, so the
    /// child's call ends here without COMMIT or ROLLBACK (the parent's call
    /// goes on unaffected, and commits or rolls back as its body decides).
    Forked {
        /// The annotated function.
        function: &'static str,
    },
    /// The function needs a transaction of its own (`requires_new`, or a
    /// pool of its own) on a SQLite database that a caller on this thread is
    /// in a transaction on, and SQLite would make it wait for that caller,
    /// which cannot finish before it returns: it would have waited out the
    /// busy timeout and failed with "database is locked". Refused before
    /// anything is sent.
    LockedByCaller {
        /// The function that was called.
        function: &'static str,
        /// The caller whose transaction holds the lock.
        holder: &'static str,
        /// The caller's transaction writes (otherwise it is `read_only`).
        caller_writes: bool,
        /// The database is in WAL mode.
        wal: bool,
    },
    /// An [`AsyncPool`](crate::AsyncPool) built before `fork()` was used in
    /// the child. Its connections, and the tokio runtime that drives them,
    /// are the parent's: the child builds a pool (and a runtime) of its own.
    /// The inherited pool is never touched, not even when it is dropped.
    AsyncPoolForked {
        /// The annotated function; `None` for a direct `AsyncPool::get`.
        function: Option<&'static str>,
    },
    /// A joining call asked for transaction settings that differ from the
    /// transaction it joins.
    NestedMismatch {
        /// The function that was called.
        function: &'static str,
        /// The function that owns the transaction.
        holder: &'static str,
        /// The setting that differs.
        setting: Setting,
    },
}

/// A step of the transaction, in [`Error::Transaction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// BEGIN (with the function's isolation, access mode and timeout).
    Begin,
    /// COMMIT.
    Commit,
    /// ROLLBACK.
    Rollback,
    /// SAVEPOINT, for a call joining a lent connection's transaction.
    Savepoint,
    /// RELEASE SAVEPOINT, at the end of a joining call.
    ReleaseSavepoint,
    /// Undoing the session settings made for the transaction.
    SessionReset,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Begin => "BEGIN",
            Step::Commit => "COMMIT",
            Step::Rollback => "ROLLBACK",
            Step::Savepoint => "SAVEPOINT",
            Step::ReleaseSavepoint => "RELEASE SAVEPOINT",
            Step::SessionReset => "the session reset",
        })
    }
}

/// A transaction setting, in [`Error::NestedMismatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Setting {
    /// `isolation = ...`
    Isolation,
    /// `timeout = "..."`
    Timeout,
}

impl fmt::Display for Setting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Setting::Isolation => "isolation level",
            Setting::Timeout => "timeout",
        })
    }
}

/// A pool's connections at one moment, in [`Error::Checkout`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolState {
    /// Connections open.
    pub connections: u32,
    /// Of those, idle.
    pub idle: u32,
    /// The most the pool opens.
    pub max_size: u32,
}

impl PoolState {
    /// Every connection the pool may open is open and in use.
    pub fn exhausted(&self) -> bool {
        self.connections >= self.max_size && self.idle == 0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Query(e) => fmt::Display::fmt(e, f),
            Error::NoPool {
                connection,
                function,
            } => write!(
                f,
                "no db_txn pool for {connection} (called from `{function}`): build one with \
                 `db_txn::Pool::<{short}>::builder(url).build()?` and register it with \
                 `db_txn::install(pool)`, or name it with `#[db_txn(pool = ...)]`",
                short = short_type_name(connection),
            ),
            Error::BadUrl {
                backend,
                url,
                reason,
            } => write!(f, "cannot use `{url}` for a {backend} pool: {reason}"),
            Error::Connect {
                backend, server, ..
            } => write!(f, "cannot connect to {backend} at {server}"),
            Error::Setup {
                backend, server, ..
            } => write!(
                f,
                "a new connection to {backend} at {server} failed its set-up (the pool's \
                 settings, the on_connect hook, or reading the server's settings)"
            ),
            Error::NoSession { connection } => write!(
                f,
                "no {connection} is lent on this thread: call this inside `db_txn::lend(conn, || ...)`"
            ),
            Error::Checkout {
                function,
                timeout,
                state,
                server,
                last_error,
            } => {
                write!(f, "no database connection within {timeout:?}")?;
                if let Some(function) = function {
                    write!(f, " for `{function}`")?;
                }
                if state.exhausted() && last_error.is_none() {
                    return write!(
                        f,
                        ": the pool is exhausted, all {} connections are in use (raise \
                         max_size, or look for calls that hold a connection long)",
                        state.max_size
                    );
                }
                write!(
                    f,
                    ": {server} did not give one ({} of {} open, {} idle)",
                    state.connections, state.max_size, state.idle
                )?;
                match last_error {
                    Some(e) => write!(f, "; last error: {e}"),
                    None => write!(f, "; no answer from the server"),
                }
            }
            Error::Disconnected {
                function,
                attempts,
                kind,
                ..
            } => write!(
                f,
                "`{function}`: connection lost ({kind}) on each of {attempts} attempt(s); \
                 nothing was committed"
            ),
            Error::CommitUnknown { function, .. } => write!(
                f,
                "`{function}`: connection lost while COMMIT was in flight: the transaction may \
                 or may not have been committed"
            ),
            Error::Transaction { function, step, .. } => write!(f, "`{function}`: {step} failed"),
            Error::Unsupported {
                function,
                backend,
                detail,
            } => write!(f, "`{function}`: {backend} {detail}"),
            Error::ConnectionBorrowed { function, holder } => write!(
                f,
                "`{function}` was called while `{holder}` holds the connection of the same pool; \
                 to join its transaction, call it inside `db_txn::lend(conn, || ...)` in \
                 `{holder}`, or give `{function}` its own transaction with \
                 `#[db_txn(requires_new)]`"
            ),
            Error::Forked { function } => write!(
                f,
                "`{function}`: this process was forked inside the transaction, which belongs to \
                 the parent; the child neither commits nor rolls it back (open the child's own \
                 transactions with calls made outside the parent's)"
            ),
            Error::LockedByCaller {
                function,
                holder,
                caller_writes,
                wal,
            } => locked_by_caller(f, function, holder, *caller_writes, *wal),
            Error::AsyncPoolForked { function } => {
                if let Some(function) = function {
                    write!(f, "`{function}`: ")?;
                }
                write!(
                    f,
                    "this async pool was built before fork(): its connections and the tokio \
                     runtime that drives them are the parent's; build the pool (and the \
                     runtime) in the child"
                )
            }
            Error::NestedMismatch {
                function,
                holder,
                setting,
            } => write!(
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
            // Transparent: the diesel error's own message is this one's.
            Error::Query(e) => e.source(),
            Error::Connect { source, .. } => Some(source),
            Error::Setup { source, .. }
            | Error::Disconnected { source, .. }
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

fn locked_by_caller(
    f: &mut fmt::Formatter<'_>,
    function: &str,
    holder: &str,
    caller_writes: bool,
    wal: bool,
) -> fmt::Result {
    write!(
        f,
        "`{function}` needs a transaction of its own on the SQLite database that `{holder}` \
         is in a transaction on, on this thread; "
    )?;
    f.write_str(if caller_writes {
        "SQLite allows one writer at a time and that transaction holds the write lock until \
         it commits"
    } else {
        "outside WAL mode, that read transaction keeps any writer from committing"
    })?;
    write!(
        f,
        ", so `{function}` would wait for its own caller. Join `{holder}`'s transaction with \
         `db_txn::lend(conn, || ...)`, "
    )?;
    if wal {
        write!(f, "make `{function}` `read_only`, ")?;
    }
    write!(f, "or call `{function}` after `{holder}` has committed")?;
    if !wal {
        f.write_str(
            " (without WAL, as with `:memory:` or `sqlite_wal(false)`, readers and the writer \
             block each other, so `read_only` does not help)",
        )?;
    }
    Ok(())
}

fn short_type_name(full: &str) -> &str {
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

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

    fn checkout(state: PoolState, last_error: Option<&str>) -> String {
        Error::Checkout {
            function: Some("f"),
            timeout: Duration::from_millis(250),
            state,
            server: "mysql://app@db:3306/app".into(),
            last_error: last_error.map(str::to_owned),
        }
        .to_string()
    }

    #[test]
    fn exhausted_only_when_every_connection_is_in_use() {
        let full = PoolState {
            connections: 4,
            idle: 0,
            max_size: 4,
        };
        assert_eq!(
            checkout(full, None),
            "no database connection within 250ms for `f`: the pool is exhausted, all 4 \
             connections are in use (raise max_size, or look for calls that hold a connection \
             long)"
        );
        let none_open = PoolState {
            max_size: 4,
            ..PoolState::default()
        };
        assert_eq!(
            checkout(none_open, None),
            "no database connection within 250ms for `f`: mysql://app@db:3306/app did not give \
             one (0 of 4 open, 0 idle); no answer from the server"
        );
        assert!(checkout(none_open, Some("Can't connect")).ends_with("; last error: Can't connect"));
    }

    #[test]
    fn bad_url_names_the_url_and_the_backend() {
        let e = Error::BadUrl {
            backend: Backend::Sqlite,
            url: "mysql://app@db/app".into(),
            reason: "it is a MariaDB/MySQL URL".into(),
        };
        assert_eq!(
            e.to_string(),
            "cannot use `mysql://app@db/app` for a SQLite pool: it is a MariaDB/MySQL URL"
        );
    }

    #[test]
    fn locked_by_caller_gives_only_advice_that_works() {
        let msg = |caller_writes, wal| {
            Error::LockedByCaller {
                function: "app::audit",
                holder: "app::order",
                caller_writes,
                wal,
            }
            .to_string()
        };
        let wal_writer = msg(true, true);
        assert!(wal_writer.contains("one writer at a time"), "{wal_writer}");
        assert!(
            wal_writer.contains("make `app::audit` `read_only`"),
            "{wal_writer}"
        );
        assert!(wal_writer.contains("db_txn::lend"), "{wal_writer}");
        assert!(
            wal_writer.contains("after `app::order` has committed"),
            "{wal_writer}"
        );
        let memory_writer = msg(true, false);
        assert!(
            !memory_writer.contains("make `app::audit` `read_only`"),
            "{memory_writer}"
        );
        assert!(memory_writer.contains("without WAL"), "{memory_writer}");
        let rollback_reader = msg(false, false);
        assert!(
            rollback_reader.contains("read transaction keeps any writer from committing"),
            "{rollback_reader}"
        );
    }

    #[test]
    fn a_cause_is_printed_once_in_a_chain() {
        let source = diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new("Lost connection to server during query".to_string()),
        );
        let e = Error::Disconnected {
            function: "f",
            attempts: 2,
            kind: Disconnect::Lost,
            source,
        };
        let top = e.to_string();
        let cause = e.source().map(ToString::to_string).unwrap_or_default();
        assert_eq!(cause, "Lost connection to server during query");
        assert!(!top.contains(&cause), "{top}");
        // Transparent: the diesel error's message, and no second copy as source.
        let q = Error::Query(diesel::result::Error::NotFound);
        assert_eq!(q.to_string(), diesel::result::Error::NotFound.to_string());
        assert!(q.source().is_none());
    }
}
