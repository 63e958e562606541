//! The async counterpart of [`Driver`](super::Driver): what the async pool
//! and runner do on one diesel-async connection type. Each backend folder
//! implements it next to its sync driver (`async_driver.rs`), with the same
//! [`Dialect`] for its SQL and its error classification.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use diesel::QueryResult;
use diesel_async::{AnsiTransactionManager, AsyncConnection};

use super::{
    Backend, Dialect, LostSession, Outcome, Position, PositionOf, Replay, ServerInfo, ServerRole,
    Token,
};

/// A diesel-async connection type `#[db_txn]` can run an `async fn` on:
/// `AsyncPgConnection` (feature `async-postgres`) and `AsyncMysqlConnection`
/// (feature `async-mysql`).
///
/// Sealed: what the async pool and runner need from a connection is
/// implemented inside this crate, one module per backend.
///
/// SQLite through diesel-async's `SyncConnectionWrapper` is not one: a
/// statement future dropped there blocks the executor thread until the
/// statement ends (or panics on a current-thread runtime), so a cancelled
/// call could not keep the guarantees below. Keep SQLite functions sync and
/// call them through `spawn_blocking`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a connection type an `async fn` with `#[db_txn]` can run on",
    label = "not a db_txn async connection type",
    note = "an `async fn` with `#[db_txn]` takes `&mut AsyncPgConnection` (feature \
            `async-postgres`) or `&mut AsyncMysqlConnection` (feature `async-mysql`) from \
            diesel-async; for diesel's blocking connections (`PgConnection`, \
            `MysqlConnection`, `SqliteConnection`) make the function sync and call it \
            through `tokio::task::spawn_blocking`"
)]
pub trait AsyncTxnConnection:
    AsyncConnection<TransactionManager = AnsiTransactionManager> + Send + 'static + AsyncDriver
{
    /// Which database this is.
    const BACKEND: Backend;
}

/// Asks the server to stop the statement a connection is running, from
/// outside it (PostgreSQL's cancel request, MariaDB/MySQL `KILL QUERY` on a
/// connection of its own).
pub type Canceller = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What the async pool and runner do on one concrete diesel-async
/// connection type: the sealed supertrait of [`AsyncTxnConnection`].
pub trait AsyncDriver: Sized + Send + 'static {
    /// The server this driver talks to.
    type Dialect: Dialect;

    /// Read what the pool must know about the server (after the user's
    /// `on_connect` hook).
    fn server_info(&mut self) -> impl Future<Output = QueryResult<ServerInfo>> + Send;

    /// The server's role now (the role check of a pooled connection), read
    /// with the same SQL as the sync driver's.
    fn role(&mut self) -> impl Future<Output = QueryResult<ServerRole>> + Send;

    /// The (client, server) TCP ports of this connection as the server sees
    /// them; `None` over a unix socket.
    fn socket_ports(&mut self) -> impl Future<Output = QueryResult<Option<(u16, u16)>>> + Send;

    /// Which of the server sessions `ids` are running a statement (or
    /// waiting for a lock) rather than waiting for their client.
    fn busy_sessions(
        &mut self,
        ids: Vec<u64>,
    ) -> impl Future<Output = QueryResult<Vec<u64>>> + Send;

    /// A handle that cancels the statement this connection runs, usable
    /// after the connection itself is gone.
    fn canceller(&self) -> Canceller;

    /// A position in the server's replication stream (for read-your-writes),
    /// read with the same SQL as [`Driver::position`](super::Driver::position);
    /// `None` where the server keeps none.
    fn position(
        &mut self,
        _server: &ServerInfo,
        _of: PositionOf,
    ) -> impl Future<Output = QueryResult<Option<Position>>> + Send {
        async { Ok(None) }
    }

    /// Wait up to `limit` until this replica shows everything up to
    /// `position`, as [`Driver::wait_for`](super::Driver::wait_for).
    fn wait_for(
        &mut self,
        _server: &ServerInfo,
        _position: &Position,
        _limit: Duration,
    ) -> impl Future<Output = QueryResult<Replay>> + Send {
        async { Ok(Replay::Reached) }
    }

    /// What resolves a lost COMMIT (`lost_commit.rs`), as
    /// [`Driver`](super::Driver)'s methods of the same names: the SQL and
    /// what its answers mean are the backend's `resolve.rs`, shared.
    ///
    /// [`Scheme::Marker`](super::Scheme::Marker): create the marker table
    /// if it is missing (outside any transaction) and delete stale markers.
    fn create_markers(&mut self) -> impl Future<Output = QueryResult<()>> + Send {
        async { Ok(()) }
    }

    /// [`Scheme::Marker`](super::Scheme::Marker): delete the markers of
    /// transactions whose outcome is known.
    fn forget_markers(&mut self, _ids: Vec<i64>) -> impl Future<Output = QueryResult<()>> + Send {
        async { Ok(()) }
    }

    /// [`Scheme::Xid`](super::Scheme::Xid): what identifies the open
    /// transaction, read just before COMMIT; `None` if it wrote nothing.
    fn before_commit(&mut self) -> impl Future<Output = QueryResult<Option<Token>>> + Send {
        async { Ok(None) }
    }

    /// What became of the transaction of `token`, asked on another connection.
    fn commit_outcome(
        &mut self,
        _token: &Token,
    ) -> impl Future<Output = QueryResult<Outcome>> + Send {
        async { Ok(Outcome::Unknown("this server has no way to tell")) }
    }

    /// End the session that ran the transaction of `token` if it is still
    /// open on the server; whether one was ended.
    fn end_lost_session(
        &mut self,
        _token: &Token,
        _lost: &LostSession,
    ) -> impl Future<Output = QueryResult<bool>> + Send {
        async { Ok(false) }
    }
}
