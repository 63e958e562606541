//! A test transaction that annotated calls join and that always rolls back.

use crate::error::Step;
use crate::session::{self, Held};
use crate::{Error, Pool, TxnConnection};

const NAME: &str = "db_txn::testing::test_transaction";

/// Run `f` inside a transaction on a connection of `pool` that is rolled
/// back at the end, whatever `f` returns (or if it panics): nothing `f` does
/// through `#[db_txn]` functions reaches the database for good.
///
/// The connection is [lent](crate::lend) while `f` runs, so every annotated
/// call on its connection type made by `f` on this thread joins the test
/// transaction in a SAVEPOINT (whichever pool it names) instead of checking
/// out a connection: it commits into the test transaction only, and an `Err`
/// it returns rolls back its own savepoint as it would its transaction. Plain
/// diesel code inside `f` reaches the same connection with
/// [`with_connection`](crate::with_connection).
///
/// A joined call never retries on its own (the test transaction owns the
/// connection) and runs with the test transaction's settings.
/// `#[db_txn(requires_new)]` functions are different: they check out a
/// connection of their own and **commit for real**, outside the test
/// transaction, so what they write stays after the test; a write of theirs
/// to rows the test transaction has written waits for its lock (MariaDB until
/// `innodb_lock_wait_timeout`, PostgreSQL until `lock_timeout`, by default
/// forever), and on a SQLite file it fails at once with
/// [`Error::LockedByCaller`] (SQLite takes one writer at a time). Test such
/// functions on a fresh database ([`TestDatabase`](super::TestDatabase))
/// rather than in a test transaction.
///
/// `E` is the error type of `f` (`Box<dyn std::error::Error>` suits tests);
/// checking a connection out or beginning the transaction fails with
/// `E::from(db_txn::Error)`.
///
/// ```
/// # use db_txn::db_txn;
/// # use diesel::prelude::*;
/// # use diesel::SqliteConnection;
/// # diesel::table! { users (id) { id -> Integer, name -> Text } }
/// #[db_txn]
/// fn add_user(conn: &mut SqliteConnection, name: &str) -> Result<usize, db_txn::Error> {
///     Ok(diesel::insert_into(users::table).values(users::name.eq(name)).execute(conn)?)
/// }
///
/// #[db_txn(read_only)]
/// fn count_users(conn: &mut SqliteConnection) -> Result<i64, db_txn::Error> {
///     Ok(users::table.count().get_result(conn)?)
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let pool = db_txn::Pool::<SqliteConnection>::new(dir.path().join("app.db").to_str().unwrap())?;
/// # diesel::sql_query("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
/// #     .execute(&mut *pool.get()?)?;
/// db_txn::install(pool.clone());
///
/// db_txn::testing::test_transaction(&pool, || -> Result<(), db_txn::Error> {
///     add_user("alice")?;
///     add_user("bob")?;
///     assert_eq!(count_users()?, 2); // seen inside the test transaction
///     Ok(())
/// })?;
/// assert_eq!(count_users()?, 0, "rolled back");
/// # Ok(()) }
/// ```
pub fn test_transaction<C, T, E>(pool: &Pool<C>, f: impl FnOnce() -> Result<T, E>) -> Result<T, E>
where
    C: TxnConnection,
    E: From<Error>,
{
    let mut conn = pool.get()?;
    conn.begin_test_transaction()
        .map_err(|source| Error::Transaction {
            function: NAME,
            step: Step::Begin,
            source,
        })?;
    // On SQLite the test transaction may hold the write lock: a call that
    // would wait for it (`requires_new`) is refused at once.
    let held = conn
        .tracked()
        .server
        .single_writer
        .map(|db| Held { db, writes: true });
    let result = session::lend_as(&mut *conn, NAME, held, f);
    // A connection of `Pool::get` goes back without a transaction: the test
    // transaction is rolled back through diesel's transaction manager (or
    // the connection is closed if it cannot be).
    drop(conn);
    result
}
