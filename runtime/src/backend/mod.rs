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
mod position;
pub(crate) mod postgres;
mod resolve;
mod role;
pub(crate) mod sqlite;
pub(crate) mod url;

pub use position::Position;
pub use role::{PositionOf, Replay, ServerRole};

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::r2d2::R2D2Connection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::{ConnectionError, ConnectionResult, QueryResult};

use crate::classify::{Disconnect, ErrorClass};
use crate::options::Options;
use crate::registry::DefaultSlot;
pub(crate) use resolve::{Outcome, Scheme, Token, XidToken};
pub use sqlite::SingleWriter;

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
    /// How a pool opens its connections to `url`, or why this backend
    /// refuses it: another backend's URL, or a name the driver would misread
    /// (the reason says what is accepted).
    fn target(url: &str) -> Result<Target, String>;

    /// The SQL that begins a top-level transaction with `options` (and
    /// undoes its session settings afterwards), or why the backend cannot
    /// honour an option. `upfront`: take the write lock at BEGIN (only a
    /// database with one writer at a time, SQLite, distinguishes).
    fn txn_sql(
        server: &ServerInfo,
        options: &Options,
        upfront: bool,
    ) -> Result<TxnSql, Unsupported>;

    /// A statement failed because another connection holds the lock it
    /// needed (SQLite's `SQLITE_BUSY`): in a transaction that did not take
    /// the write lock up front, the sign to begin again with it.
    fn lock_busy(_kind: DatabaseErrorKind, _message: &str) -> bool {
        false
    }

    /// What an error of this backend's client library or server means.
    fn classify(kind: DatabaseErrorKind, message: &str) -> ErrorClass;

    /// Whether a failed connect means "no server there yet" (worth polling
    /// for while it restarts), rather than a refusal such as a wrong
    /// password (not worth repeating).
    fn unreachable(message: &str) -> bool;

    /// `error`, from opening `url`, in words that say what failed.
    fn explain_connect(_url: &str, error: ConnectionError) -> ConnectionError {
        error
    }

    /// Whether `message`, the error of a ROLLBACK, only says that no
    /// transaction was open (the connection is clean).
    fn idle_rollback(_message: &str) -> bool {
        false
    }

    /// SQL that ends the session `id` of this server (its link died), if
    /// the server has a way.
    fn end_session_sql(_id: u64) -> Option<String> {
        None
    }

    /// Ends whatever transaction a raw user left open, quietly when there
    /// is none.
    const RAW_RESET_SQL: &'static str = "ROLLBACK";

    /// How this server tells the outcome of a lost COMMIT (`lost_commit.rs`).
    const RESOLVE: Scheme = Scheme::None;

    /// [`Scheme::Marker`]: the BEGIN batch `begin` that also writes marker `id`.
    fn begin_with_marker(begin: &str, _id: i64) -> String {
        begin.to_owned()
    }
}

/// How a pool opens its connections, decided by the backend from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Open this instead of the URL given (SQLite `:memory:`: a database
    /// of the pool's own, shared by its connections).
    pub url: Option<String>,
    /// The database lives only while a connection to it is open (in
    /// memory): the pool keeps one open for as long as it lives.
    pub keep_open: bool,
}

impl Target {
    /// Connect to the URL as given.
    pub const AS_GIVEN: Target = Target {
        url: None,
        keep_open: false,
    };
}

/// What the pool and the runner do on one concrete connection type: the
/// sealed supertrait of [`TxnConnection`].
pub trait Driver: Sized {
    /// The server this driver talks to.
    type Dialect: Dialect;

    /// Where [`install`](crate::install) keeps this type's default pool.
    fn default_slot() -> &'static DefaultSlot<Self>
    where
        Self: TxnConnection;

    /// BEGIN the top-level transaction of a pooled call, whose batch is
    /// `sql` ([`TxnSql::begin`]), and open diesel's transaction state.
    /// `direct`: no instrumentation of the user's watches this connection,
    /// so the statement may go another way than diesel's batch (which a
    /// user's instrumentation would see differently). The default sends
    /// the batch; SQLite, when `direct`, prepares its plain BEGINs once per
    /// connection.
    #[inline]
    fn begin_top_level(&mut self, sql: &str, direct: bool) -> QueryResult<()>
    where
        Self: Connection<TransactionManager = AnsiTransactionManager>,
    {
        let _ = direct;
        AnsiTransactionManager::begin_transaction_sql(self, sql)
    }

    /// COMMIT the top-level transaction [`begin_top_level`](Self::begin_top_level)
    /// opened, and close diesel's transaction state, with diesel's handling
    /// of a failed COMMIT. `direct` as there. The default is diesel's
    /// `commit_transaction`; SQLite, when `direct`, prepares its COMMIT.
    #[inline]
    fn commit_top_level(&mut self, direct: bool) -> QueryResult<()>
    where
        Self: Connection<TransactionManager = AnsiTransactionManager>,
    {
        let _ = direct;
        <AnsiTransactionManager as TransactionManager<Self>>::commit_transaction(self)
    }

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

    /// End the server session `id` (one of this pool's, whose link died):
    /// its transaction rolls back and its locks are released.
    fn end_session(&mut self, _id: u64) -> QueryResult<()> {
        Ok(())
    }

    /// The server's role now (the role check of a pooled connection).
    fn role(&mut self) -> QueryResult<ServerRole> {
        Ok(ServerRole::default())
    }

    /// A position in the server's replication stream (for read-your-writes);
    /// `None` where the server keeps none (no binary log, GTIDs off).
    fn position(&mut self, _server: &ServerInfo, _of: PositionOf) -> QueryResult<Option<Position>> {
        Ok(None)
    }

    /// Wait up to `limit` until this replica shows everything up to `position`.
    fn wait_for(
        &mut self,
        _server: &ServerInfo,
        _position: &Position,
        _limit: Duration,
    ) -> QueryResult<Replay> {
        Ok(Replay::Reached)
    }

    /// [`Scheme::Marker`] (the dialect's [`Dialect::RESOLVE`]): create the
    /// marker table if it is missing (outside any transaction) and delete
    /// markers left behind long ago.
    fn create_markers(&mut self) -> QueryResult<()> {
        Ok(())
    }

    /// [`Scheme::Marker`]: delete the markers of transactions whose outcome is known.
    fn forget_markers(&mut self, _ids: &[i64]) -> QueryResult<()> {
        Ok(())
    }

    /// [`Scheme::Xid`]: what identifies the open transaction, read just
    /// before COMMIT; `None` if it wrote nothing (nothing to commit).
    fn before_commit(&mut self) -> QueryResult<Option<Token>> {
        Ok(None)
    }

    /// What became of the transaction of `token`, asked on another connection.
    fn commit_outcome(&mut self, _token: &Token) -> QueryResult<Outcome> {
        Ok(Outcome::Unknown("this server has no way to tell"))
    }

    /// End the session that ran the transaction of `token` if it is still
    /// open on the server (it has not noticed the lost link), so that its
    /// fate is decided now. Whether one was ended.
    fn end_lost_session(&mut self, _token: &Token, _lost: &LostSession) -> QueryResult<bool> {
        Ok(false)
    }
}

/// The connection whose COMMIT was lost, as the resolver needs it.
#[derive(Debug, Clone, Copy)]
pub struct LostSession {
    /// Its session id on the server (read at connect).
    pub id: Option<u64>,
    /// When it was opened.
    pub opened: std::time::Instant,
    /// Which implementation served it.
    pub flavor: Flavor,
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
    /// The database takes one writer at a time (SQLite): which one.
    pub single_writer: Option<SingleWriter>,
    /// Its role when the connection was opened or last checked.
    pub role: ServerRole,
    /// Reached through a transaction-mode pooler: a session is not the
    /// client's from one transaction to the next.
    pub behind_pooler: bool,
}

/// Settings applied to every new connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectSettings {
    /// SQLite `busy_timeout`.
    pub sqlite_busy_timeout: Duration,
    /// SQLite `journal_mode = WAL` on file databases.
    pub sqlite_wal: bool,
    /// The server is behind a transaction-mode pooler (pgbouncer).
    pub transaction_pooler: bool,
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
    upfront: bool,
) -> Result<TxnSql, Unsupported> {
    <C::Dialect as Dialect>::txn_sql(server, options, upfront)
}

/// How a pool of `C` opens `url`, or why it refuses it.
pub(crate) fn target<C: TxnConnection>(url: &str) -> Result<Target, String> {
    <C::Dialect as Dialect>::target(url)
}

/// Open a connection of type `C`; a failure says what failed.
pub(crate) fn establish<C: TxnConnection>(url: &str) -> ConnectionResult<C> {
    C::establish(url).map_err(|e| <C::Dialect as Dialect>::explain_connect(url, e))
}

/// Whether `err`, the error of a ROLLBACK on `C`, only says that no
/// transaction was open.
pub(crate) fn idle_rollback<C: TxnConnection>(err: &DieselError) -> bool {
    match err {
        DieselError::DatabaseError(_, info) => {
            <C::Dialect as Dialect>::idle_rollback(info.message())
        }
        _ => false,
    }
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
