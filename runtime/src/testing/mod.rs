//! Testing code that uses `#[db_txn]` functions.
//!
//! * [`test_transaction`]: run annotated functions inside a transaction that
//!   is rolled back at the end; fast, for tests that share one database.
//! * [`TestDatabase`]: a fresh database for one test (a temporary SQLite file,
//!   or a database created on the server of `DATABASE_URL` and dropped
//!   afterwards), with a set-up closure for migrations; and
//!   [`install_for_thread`], which makes its pool the default for the test's
//!   thread only, so that tests running in parallel each use their own.
//! * [`RetryCheck`]: make a call meet a lost connection at each of its
//!   statements in turn, and check that it still returns what a clean run
//!   returns and leaves the same committed state: a body whose side effects
//!   are not safe to run twice fails in a unit test, not in production.
//!
//! A typical test module:
//!
//! ```
//! use db_txn::db_txn;
//! use db_txn::testing::{install_for_thread, test_transaction, TestDatabase};
//! use diesel::connection::SimpleConnection;
//! use diesel::prelude::*;
//! use diesel::SqliteConnection;
//!
//! diesel::table! { users (id) { id -> Integer, name -> Text } }
//!
//! #[db_txn]
//! /// Adds a user; returns how many there are now.
//! fn add_user(conn: &mut SqliteConnection, name: &str) -> Result<i64, db_txn::Error> {
//!     diesel::insert_into(users::table).values(users::name.eq(name)).execute(conn)?;
//!     Ok(users::table.count().get_result(conn)?)
//! }
//!
//! /// Each test's database, with the schema (your migrations, with
//! /// diesel_migrations: `conn.run_pending_migrations(MIGRATIONS).map(drop)`).
//! fn database() -> TestDatabase<SqliteConnection> {
//!     TestDatabase::builder()
//!         .setup(|conn: &mut SqliteConnection| {
//!             conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
//!         })
//!         .create()
//!         .expect("test database")
//! }
//!
//! // #[test]
//! fn each_test_starts_empty() -> Result<(), Box<dyn std::error::Error>> {
//!     let db = database();
//!     let _pool = install_for_thread(db.pool().clone());
//!     assert_eq!(add_user("alice")?, 1);
//!     test_transaction(db.pool(), || {
//!         assert_eq!(add_user("bob")?, 2);
//!         Ok::<_, db_txn::Error>(())
//!     })?;
//!     assert_eq!(add_user("carol")?, 2, "bob was rolled back");
//!     Ok(())
//! }
//! # fn main() { each_test_starts_empty().unwrap(); }
//! ```
//!
//! Tests of MariaDB/MySQL or PostgreSQL code run the same way against a
//! server: `DATABASE_URL=postgres://user:pass@localhost/postgres cargo test`
//! (the user must be allowed to create databases).

mod database;
mod retry_check;
mod thread;
mod transaction;

pub use database::{TestDatabase, TestDatabaseBuilder, TestDatabaseError};
pub use retry_check::{Difference, RetryCheck, RetryCheckError, RetryReport, RetryUnsafe};
pub use thread::{install_for_thread, ThreadPoolGuard};
pub use transaction::test_transaction;
