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
//! diesel::table! {
//!     users (id) {
//!         id -> Integer,
//!         name -> Text,
//!     }
//! }
//!
//! /// Adds a user; returns how many there are.
//! #[db_txn]
//! fn add_user(conn: &mut SqliteConnection, name: &str) -> Result<i64, db_txn::Error> {
//!     diesel::insert_into(users::table)
//!         .values(users::name.eq(name))
//!         .execute(conn)?;
//!     Ok(users::table.count().get_result(conn)?)
//! }
//!
//! fn main() -> Result<(), db_txn::Error> {
//! #   let dir = tempfile::tempdir().unwrap();
//! #   let path = dir.path().join("app.db");
//! #   let url = path.to_str().unwrap();
//!     let pool = db_txn::Pool::<SqliteConnection>::new(url)?;
//! #   diesel::sql_query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
//! #       .execute(&mut *pool.get()?)?;
//!     db_txn::install(pool);
//!
//!     // The caller does not pass a connection: the attribute supplies one.
//!     assert_eq!(add_user("alice")?, 1);
//!     assert_eq!(add_user("bob")?, 2);
//!     Ok(())
//! }
//! ```
//!
//! Backends: SQLite, MariaDB/MySQL and PostgreSQL, through diesel's
//! synchronous connections, one cargo feature each.
//!
//! **Contents:** [getting started](#getting-started) (from `Cargo.toml` to
//! calls) · [features](#features) and [what works where](#what-works-where) ·
//! [what a call does](#what-a-call-does) · [the desugaring](#the-desugaring) ·
//! [sessions](#sessions) · [options](#options) · [migrations](#migrations) ·
//! [testing](#testing) · [what bounds what](#what-bounds-what).
#![doc = include_str!("../GETTING_STARTED.md")]
#![doc = include_str!("../FEATURES.md")]
//!
//! # What a call does
//!
//! Each outermost call of an annotated function:
//!
//! 1. checks out a connection from the pool (pinged only when it may be
//!    stale: see [`PoolBuilder::ping_window`]), waiting at most the checkout
//!    timeout; a `read_only` call on a pool with read replicas takes a
//!    replica's (see [`PoolBuilder::replica`]);
//! 2. begins a transaction with the function's options;
//! 3. runs the body; `?` and `return` behave exactly as written;
//! 4. commits on `Ok`, rolls back on `Err`, rolls back on panic and then
//!    resumes the panic, giving the connection back to the pool healthy;
//! 5. if the connection turned out to be gone before COMMIT was sent, or its
//!    server refused a write as read-only (a failover: see
//!    [`Disconnect::ReadOnly`]), throws it away and runs the whole body once
//!    more on a fresh one (after a lost connection, the pool's connections
//!    idle since before the loss are retired without a ping: a crashing
//!    server's sessions die one by one); if it was lost while COMMIT was in
//!    flight, returns
//!    [`Error::CommitUnknown`], or, with [`resolve_commit`](crate#resolve_commit),
//!    asks the server what became of the transaction and returns the body's
//!    value or runs it again;
//! 6. always releases the connection; one that could not be rolled back is
//!    closed, never handed out again.
//!
//! # The desugaring
//!
//! ```
//! # use diesel::prelude::*;
//! # use diesel::SqliteConnection;
//! # diesel::table! { users (id) { id -> Integer, name -> Text } }
//! # type User = i64;
//! # type AppError = db_txn::Error;
//! #[db_txn::db_txn(retry = 2)]
//! fn create_user(conn: &mut SqliteConnection, name: &str) -> Result<User, AppError> {
//!     diesel::insert_into(users::table).values(users::name.eq(name)).execute(conn)?;
//!     Ok(users::table.count().get_result(conn)?)
//! }
//! ```
//! becomes
//! ```
//! # use diesel::prelude::*;
//! # use diesel::SqliteConnection;
//! # diesel::table! { users (id) { id -> Integer, name -> Text } }
//! # type User = i64;
//! # type AppError = db_txn::Error;
//! fn create_user(name: &str) -> Result<User, AppError> {
//!     ::db_txn::__private::run::<SqliteConnection, _, _, _>(
//!         ::db_txn::__private::Target::Default,
//!         ::db_txn::__private::Options::new(concat!(module_path!(), "::", "create_user")).retry(2),
//!         |conn: &mut SqliteConnection| -> Result<User, AppError> {
//!             diesel::insert_into(users::table).values(users::name.eq(name)).execute(conn)?;
//!             Ok(users::table.count().get_result(conn)?)
//!         },
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
//! functions on a connection you already hold (tests do it in a transaction
//! that rolls back: [`testing::test_transaction`]).
//! `#[db_txn(requires_new)]` takes a connection and a transaction of its own
//! instead.
#![cfg_attr(feature = "async-postgres", doc = include_str!("../ASYNC.md"))]
#![doc = include_str!("../OPTIONS.md")]
#![doc = include_str!("../MIGRATIONS.md")]
#![doc = include_str!("../TESTING.md")]
#![doc = include_str!("../BOUNDS.md")]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "async")]
mod asynk;
mod backend;
mod classify;
mod error;
mod lost_commit;
mod options;
mod pool;
mod registry;
mod runner;
mod session;
mod stats;
pub mod testing;

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
pub use pool::{ParseTokenError, Pool, PoolBuilder, PooledConnection, WriteToken};
pub use registry::{install, installed, uninstall};
pub use session::{lend, with_connection};
pub use stats::PoolStats;
