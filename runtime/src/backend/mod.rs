//! What differs between the databases, one module per backend, as diesel
//! keeps `mysql/`, `pg/` and `sqlite/`: each holds its transaction SQL, the
//! set-up of a new connection, what the pool reads from the server at
//! connect, its error classification and its connect-failure texts.
//!
//! Two traits tie a backend to the rest of the crate:
//!
//! * [`Dialect`], implemented by a marker type per backend, is what db_txn
//!   knows about a kind of server whatever the driver: the SQL it sends and
//!   what the server's and client library's errors mean. An async driver
//!   for the same server reuses it.
//! * [`Driver`], implemented by each diesel connection type, runs that
//!   knowledge on one concrete connection. It is the sealed supertrait of the
//!   public [`TxnConnection`], so its methods are callable inside the crate
//!   and invisible outside it.
//!
//! Adding a server means adding a folder here, a variant to [`Backend`] and
//! its arm in [`classify`](crate::classify).

// The dialects are plain text and tables, compiled whatever the features; each
// module gates its driver (the diesel connection type) on its cargo feature.
#[cfg(feature = "async")]
pub(crate) mod async_driver;
pub(crate) mod mysql;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, Connection};
use diesel::r2d2::R2D2Connection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::QueryResult;

use crate::classify::{Disconnect, ErrorClass};
use crate::options::Options;

#[cfg(feature = "async")]
pub use async_driver::AsyncTxnConnection;

/// The database behind a connection type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite, embedded.
    Sqlite,
    /// MariaDB or MySQL.
    Mysql,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The product name, for messages: `"SQLite"`, `"MariaDB/MySQL"`, `"PostgreSQL"`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Mysql => "MariaDB/MySQL",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A diesel connection type `#[db_txn]` can run transactions on:
/// `SqliteConnection` (feature `sqlite`), `MysqlConnection` (feature
/// `mysql`) and `PgConnection` (feature `postgres`).
///
/// Sealed: what the pool and the runner need from a connection is
/// implemented inside this crate, one module per backend.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connection type `#[db_txn]` can run transactions on",
    label = "not a db_txn connection type",
    note = "db_txn supports diesel's `SqliteConnection` (feature `sqlite`), `MysqlConnection` \
            (feature `mysql`) and `PgConnection` (feature `postgres`): take `&mut` one of them \
            and enable its feature on the `db_txn` dependency; a diesel-async connection \
            (`AsyncPgConnection`, `AsyncMysqlConnection`) is taken by an `async fn`"
)]
pub trait TxnConnection:
    Connection<TransactionManager = AnsiTransactionManager> + R2D2Connection + Send + 'static + Driver
{
    /// Which database this is.
    const BACKEND: Backend;
}

/// What db_txn knows about one kind of server, whatever the driver.
pub trait Dialect {
    /// The backend this describes.
    const BACKEND: Backend;

    /// The TCP port when a URL names none; `None` for an embedded database
    /// (no link to lose, nothing for the watchdog to watch).
    const DEFAULT_PORT: Option<u16>;

    /// The SQL that begins a top-level transaction with `options` (and
    /// undoes its session settings afterwards), or why the backend cannot
    /// honour an option.
    fn txn_sql(server: &ServerInfo, options: &Options) -> Result<TxnSql, Unsupported>;

    /// What an error of this backend's client library or server means.
    fn classify(kind: DatabaseErrorKind, message: &str) -> ErrorClass;

    /// Whether a failed connect means "no server there yet" (worth polling
    /// for while it restarts), rather than a refusal such as a wrong
    /// password (not worth repeating).
    fn unreachable(message: &str) -> bool;
}

/// What the pool and the runner do on one concrete connection type: the
/// sealed supertrait of [`TxnConnection`].
pub trait Driver: Sized {
    /// The server this driver talks to.
    type Dialect: Dialect;

    /// Apply the pool's settings to a new connection (before the user's
    /// `on_connect` hook, which may override them).
    fn prepare(&mut self, _settings: &ConnectSettings) -> QueryResult<()> {
        Ok(())
    }

    /// Read what the pool must know about the server (after the user's
    /// `on_connect` hook, so a `wait_timeout` it sets is seen).
    fn server_info(&mut self) -> QueryResult<ServerInfo> {
        Ok(ServerInfo::default())
    }

    /// The (client, server) TCP ports of this connection as the server sees
    /// them; `None` for a unix socket or an embedded database.
    fn socket_ports(&mut self) -> QueryResult<Option<(u16, u16)>> {
        Ok(None)
    }

    /// Which of the server sessions `ids` are running a statement (or
    /// waiting for a lock) rather than waiting for their client. Asked on a
    /// connection of its own by the stall watchdog.
    fn busy_sessions(&mut self, ids: &[u64]) -> QueryResult<Vec<u64>> {
        Ok(ids.to_vec())
    }
}

/// Which server implementation answered, where the SQL differs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Flavor {
    /// Not asked, or nothing differs.
    #[default]
    Unknown,
    /// MariaDB (`max_statement_time`, in seconds).
    MariaDb,
    /// MySQL (`max_execution_time`, in milliseconds, SELECT only).
    Mysql,
}

/// What was learnt about the server when a connection was opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerInfo {
    /// The server closes a connection idle for longer than this
    /// (MariaDB/MySQL session `wait_timeout`).
    pub idle_limit: Option<Duration>,
    /// Which implementation answered.
    pub flavor: Flavor,
    /// The server's id of this session (MariaDB/MySQL `CONNECTION_ID()`,
    /// PostgreSQL `pg_backend_pid()`).
    pub session_id: Option<u64>,
}

/// Settings applied to every new connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectSettings {
    /// SQLite `busy_timeout`.
    pub sqlite_busy_timeout: Duration,
    /// SQLite `journal_mode = WAL` on file databases.
    pub sqlite_wal: bool,
}

/// SQL that opens and closes one transaction with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnSql {
    /// Sent as one batch to begin the transaction.
    pub begin: Cow<'static, str>,
    /// Sent after COMMIT/ROLLBACK to undo session settings, if any.
    pub after: Option<&'static str>,
}

impl TxnSql {
    /// A plain BEGIN with nothing to undo, without an allocation.
    pub(crate) const fn plain(begin: &'static str) -> TxnSql {
        TxnSql {
            begin: Cow::Borrowed(begin),
            after: None,
        }
    }
}

/// Why a backend cannot honour an option, and what to do instead.
pub type Unsupported = &'static str;

/// The SQL for a top-level transaction on a connection of type `C`.
pub(crate) fn txn_sql<C: TxnConnection>(
    server: &ServerInfo,
    options: &Options,
) -> Result<TxnSql, Unsupported> {
    <C::Dialect as Dialect>::txn_sql(server, options)
}

/// Classify `err` as seen on a connection of `backend`, by the built-in
/// rules (a pool's [`classify`](crate::PoolBuilder::classify) rule comes first
/// inside the pool).
///
/// ```
/// use db_txn::{classify, Backend, Disconnect, ErrorClass};
/// use diesel::result::{DatabaseErrorKind, Error};
/// let gone = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new("Server has gone away".to_string()));
/// assert_eq!(classify(Backend::Mysql, &gone), ErrorClass::Disconnect(Disconnect::GoneAway));
/// assert_eq!(classify(Backend::Mysql, &Error::NotFound), ErrorClass::Other);
/// ```
pub fn classify(backend: Backend, err: &DieselError) -> ErrorClass {
    match err {
        DieselError::BrokenTransactionManager => {
            ErrorClass::Disconnect(Disconnect::BrokenTransaction)
        }
        DieselError::DatabaseError(kind, info) => {
            let (kind, message) = (*kind, info.message());
            match backend {
                Backend::Sqlite => sqlite::Sqlite::classify(kind, message),
                Backend::Mysql => mysql::Mysql::classify(kind, message),
                Backend::Postgres => postgres::Postgres::classify(kind, message),
            }
        }
        _ => ErrorClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broken_transaction_manager_is_a_disconnect_everywhere() {
        for b in [Backend::Sqlite, Backend::Mysql, Backend::Postgres] {
            assert_eq!(
                classify(b, &DieselError::BrokenTransactionManager),
                ErrorClass::Disconnect(Disconnect::BrokenTransaction)
            );
        }
    }

    #[test]
    fn dispatches_to_the_backend() {
        let gone = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("Server has gone away".to_string()),
        );
        assert_eq!(
            classify(Backend::Mysql, &gone),
            ErrorClass::Disconnect(Disconnect::GoneAway)
        );
        assert_eq!(classify(Backend::Postgres, &gone), ErrorClass::Other);
    }

    #[test]
    fn not_found_is_not_a_disconnect() {
        for d in [Backend::Sqlite, Backend::Mysql, Backend::Postgres] {
            assert_eq!(classify(d, &DieselError::NotFound), ErrorClass::Other);
        }
    }
}
