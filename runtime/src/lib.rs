//! Transactions on diesel that survive dropped database connections.
//!
//! Every long-running service meets "MySQL server has gone away" (2006),
//! "Lost connection to server during query" (2013), PostgreSQL backends
//! terminated by a restart or failover, connections dropped after idling past
//! `wait_timeout`, connections inherited across `fork()`, and connections
//! leaked until the server refuses new ones. The usual cures are a ping before
//! every use, recycling timers, a hand-written "roll back on error"
//! decorator, and closing the session after every request. With `db_txn`
//! they are one attribute.
//!
#![cfg_attr(feature = "async-postgres", doc = include_str!("../ASYNC_INTRO.md"))]
//!
//! ```
//! use db_txn::db_txn;
//! use diesel::prelude::*;
//! use diesel::SqliteConnection;
//!
//! #[db_txn]
//! fn add_user(conn: &mut SqliteConnection, name: &str) -> Result<i64, db_txn::Error> {
//!     diesel::sql_query("INSERT INTO users (name) VALUES (?)")
//!         .bind::<diesel::sql_types::Text, _>(name)
//!         .execute(conn)?;
//!     let n = diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT COUNT(*) FROM users)");
//!     Ok(diesel::select(n).get_result(conn)?)
//! }
//!
//! fn main() -> Result<(), db_txn::Error> {
//! #   let dir = tempfile::tempdir().unwrap();
//! #   let path = dir.path().join("app.db");
//! #   let url = path.to_str().unwrap();
//!     let pool = db_txn::Pool::<SqliteConnection>::new(url)?;
//! #   diesel::sql_query("CREATE TABLE users (name TEXT)").execute(&mut *pool.get()?)?;
//!     db_txn::install(pool);
//!
//!     // The caller does not pass a connection: the attribute supplies one.
//!     assert_eq!(add_user("alice")?, 1);
//!     assert_eq!(add_user("bob")?, 2);
//!     Ok(())
//! }
//! ```
//!
//! # What a call does
//!
//! Each outermost call of an annotated function:
//!
//! 1. checks out a connection from the pool (pinged only when it may be
//!    stale: see [`PoolBuilder::ping_window`]), waiting at most the checkout
//!    timeout;
//! 2. begins a transaction with the function's options;
//! 3. runs the body; `?` and `return` behave exactly as written;
//! 4. commits on `Ok`, rolls back on `Err`, rolls back on panic and then
//!    resumes the panic, giving the connection back to the pool healthy;
//! 5. if the connection turned out to be gone before COMMIT was sent, throws
//!    it away and runs the whole body once more on a fresh one;
//! 6. always releases the connection; one that could not be rolled back is
//!    closed, never handed out again.
//!
//! # The desugaring
//!
//! ```ignore
//! #[db_txn(retry = 2)]
//! fn create_user(conn: &mut SqliteConnection, name: &str) -> Result<User, AppError> {
//!     /* body */
//! }
//! ```
//! becomes
//! ```ignore
//! fn create_user(name: &str) -> Result<User, AppError> {
//!     ::db_txn::__private::run::<SqliteConnection, _, _, _>(
//!         ::db_txn::__private::Target::Default,
//!         ::db_txn::__private::Options::new(concat!(module_path!(), "::", "create_user")).retry(2),
//!         |conn: &mut SqliteConnection| -> Result<User, AppError> { /* body */ },
//!     )
//! }
//! ```
//! The body becomes a closure that borrows the arguments, because it may run
//! twice; a body that must consume an argument can use `retry = 0`.
//! Code in the body outside the database (sending mail, calling a service)
//! runs again on a retry: keep it idempotent, or do it after the call.
//!
//! The error type `E` must implement `From<db_txn::Error>` (pool and
//! transaction errors); `db_txn::Error` itself works, and converts from
//! diesel's errors so `?` works in the body.
//!
//! # Sessions
//!
//! A call made from inside another annotated call's body on the same pool
//! joins that transaction (in a SAVEPOINT) when the caller lends its
//! connection with [`lend`]; the same function is the way to run annotated
//! functions on a connection you already hold, for example inside
//! `begin_test_transaction`. `#[db_txn(requires_new)]` takes a connection and
//! a transaction of its own instead.
#![cfg_attr(feature = "async-postgres", doc = include_str!("../ASYNC.md"))]
#![doc = include_str!("../OPTIONS.md")]
#![warn(missing_docs)]

#[cfg(feature = "async")]
mod asynk;
mod backend;
mod classify;
mod error;
mod options;
mod pool;
mod registry;
mod runner;
mod session;
mod stats;

#[doc(hidden)]
pub mod __private;

#[cfg(feature = "async")]
pub use asynk::{
    pool::{AsyncPool, AsyncPoolBuilder, AsyncPooledConnection, BoxFuture},
    registry::{install_async, installed_async, uninstall_async},
    session::{lend_async, with_connection_async},
};
#[cfg(feature = "async")]
pub use backend::AsyncTxnConnection;
pub use backend::{classify, Backend, TxnConnection};
pub use classify::{Disconnect, ErrorClass};
/// Runs the function's body in a transaction on a pooled connection: see [what a call
/// does](crate#what-a-call-does) and [each option with a runnable example](crate#options).
#[doc(inline)]
pub use db_txn_macros::db_txn;
pub use error::{Error, PoolState, Setting, Step};
pub use options::Isolation;
#[doc(hidden)]
pub use options::Options;
pub use pool::{Pool, PoolBuilder, PooledConnection};
pub use registry::{install, installed, uninstall};
pub use session::{lend, with_connection};
pub use stats::PoolStats;
