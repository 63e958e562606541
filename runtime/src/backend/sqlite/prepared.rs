//! BEGIN and COMMIT on a `SqliteConnection`, prepared once per connection.
//!
//! diesel sends BEGIN and COMMIT as batches (`sqlite3_exec`), which SQLite
//! parses and compiles on every call. An annotated call's top-level `BEGIN`,
//! `BEGIN IMMEDIATE` and `COMMIT` go through diesel's statement cache
//! instead, compiled once per connection, so that a steady call runs no SQL
//! parser at all: fewer client instructions per transaction and fewer lines
//! of code to fetch (callgrind, BENCHMARKS.md).
//!
//! diesel's transaction manager still knows of the transaction (the body's
//! own `transaction` calls take savepoints in it; a connection diesel holds
//! in a transaction, or broken, gets diesel's error and no BEGIN is sent):
//! its state is moved with `change_transaction_depth`, as diesel's own
//! `begin_transaction_sql` and `commit_transaction` move it after their
//! batch. A COMMIT that fails is handled as diesel's is: rolled back if the
//! transaction is still open, the connection marked broken if that fails.
//!
//! Only on a connection without instrumentation of the user's (the runner
//! asks, see `Tracked::direct`): such instrumentation sees diesel's own
//! events (`BeginTransaction`, `CommitTransaction`), which diesel lets no
//! one else raise, so there BEGIN and COMMIT stay diesel's batches.

use std::num::NonZeroU32;

use diesel::connection::{
    AnsiTransactionManager as Tm, TransactionDepthChange, TransactionManager,
    TransactionManagerStatus,
};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::result::Error;
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, RunQueryDsl, SqliteConnection};

/// `BEGIN` (deferred).
#[derive(Debug, Clone, Copy)]
struct Deferred;

/// `BEGIN IMMEDIATE`.
#[derive(Debug, Clone, Copy)]
struct Immediate;

/// `COMMIT`.
#[derive(Debug, Clone, Copy)]
struct Commit;

macro_rules! prepared_statement {
    ($ty:ty, $sql:literal) => {
        impl QueryId for $ty {
            // A type of its own: diesel's cache keys the statement by it.
            type QueryId = $ty;
            const HAS_STATIC_QUERY_ID: bool = true;
        }

        impl QueryFragment<Sqlite> for $ty {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
                out.push_sql($sql);
                Ok(())
            }
        }

        impl RunQueryDsl<SqliteConnection> for $ty {}
    };
}

prepared_statement!(Deferred, "BEGIN");
prepared_statement!(Immediate, "BEGIN IMMEDIATE");
prepared_statement!(Commit, "COMMIT");

/// diesel's transaction state of `conn`.
fn status(conn: &mut SqliteConnection) -> &mut TransactionManagerStatus {
    <Tm as TransactionManager<SqliteConnection>>::transaction_manager_status_mut(conn)
}

/// Begin the top-level transaction whose batch is `sql`: prepared when it
/// is one of the two plain BEGINs on a `direct` connection (no
/// instrumentation of the user's), as diesel's batch otherwise
/// (`read_only`'s pragmas, or a watched connection).
#[inline]
pub(in crate::backend) fn begin(
    conn: &mut SqliteConnection,
    sql: &str,
    direct: bool,
) -> QueryResult<()> {
    match sql {
        "BEGIN" if direct => prepared_begin(conn, Deferred),
        "BEGIN IMMEDIATE" if direct => prepared_begin(conn, Immediate),
        _ => Tm::begin_transaction_sql(conn, sql),
    }
}

/// Sends `begin` from the cache, then opens diesel's transaction state.
#[inline]
fn prepared_begin<B>(conn: &mut SqliteConnection, begin: B) -> QueryResult<()>
where
    B: RunQueryDsl<SqliteConnection> + diesel::query_dsl::methods::ExecuteDsl<SqliteConnection>,
{
    // diesel's checks first, as in `begin_transaction_sql`.
    match status(conn) {
        TransactionManagerStatus::Valid(s) if s.transaction_depth().is_none() => {}
        TransactionManagerStatus::Valid(_) => return Err(Error::AlreadyInTransaction),
        TransactionManagerStatus::InError => return Err(Error::BrokenTransactionManager),
    }
    begin.execute(conn)?;
    match status(conn) {
        TransactionManagerStatus::Valid(s) => {
            s.change_transaction_depth(TransactionDepthChange::IncreaseDepth)
        }
        TransactionManagerStatus::InError => Err(Error::BrokenTransactionManager),
    }
}

/// Commit the top-level transaction: prepared on a `direct` connection
/// when diesel's state holds just that one (depth 1), diesel's
/// `commit_transaction` otherwise.
#[inline]
pub(in crate::backend) fn commit(conn: &mut SqliteConnection, direct: bool) -> QueryResult<()> {
    let top_level = NonZeroU32::new(1);
    match status(conn) {
        TransactionManagerStatus::Valid(s) if direct && s.transaction_depth() == top_level => {}
        _ => return Tm::commit_transaction(conn),
    }
    match Commit.execute(conn) {
        Ok(_) => {
            if let TransactionManagerStatus::Valid(s) = status(conn) {
                // `NotInTransaction` cannot happen (depth 1 above); diesel
                // ignores it after a top-level COMMIT too.
                let _ = s.change_transaction_depth(TransactionDepthChange::DecreaseDepth);
            }
            Ok(())
        }
        Err(commit_error) => Err(commit_failed(conn, commit_error)),
    }
}

/// As diesel's `commit_transaction` after a failed top-level COMMIT: roll
/// back; if that fails too while SQLite still holds the transaction, the
/// connection's transaction manager is broken (`RollbackErrorOnCommit`).
/// A transaction SQLite ended itself (its ROLLBACK then finds none, and
/// diesel's batch resets its state) gives the COMMIT's error alone.
#[cold]
#[inline(never)]
fn commit_failed(conn: &mut SqliteConnection, commit_error: Error) -> Error {
    let Err(rollback_error) = Tm::rollback_transaction(conn) else {
        return commit_error;
    };
    let status = status(conn);
    match status {
        TransactionManagerStatus::Valid(s) if s.transaction_depth().is_none() => commit_error,
        _ => {
            status.set_in_error();
            Error::RollbackErrorOnCommit {
                rollback_error: Box::new(rollback_error),
                commit_error: Box::new(commit_error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::connection::{Connection, SimpleConnection, TransactionManager};
    use diesel::sql_types::BigInt;
    use diesel::QueryableByName;

    use super::*;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn count(conn: &mut SqliteConnection) -> i64 {
        diesel::sql_query("SELECT count(*) AS n FROM t")
            .get_result::<Count>(conn)
            .unwrap()
            .n
    }

    fn memory() -> SqliteConnection {
        let mut conn = SqliteConnection::establish(":memory:").unwrap();
        conn.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        conn
    }

    #[test]
    fn a_prepared_begin_opens_a_transaction_diesel_knows_of() {
        let mut conn = memory();
        for sql in ["BEGIN", "BEGIN IMMEDIATE", "BEGIN", "BEGIN IMMEDIATE"] {
            begin(&mut conn, sql, true).unwrap();
            conn.batch_execute("INSERT INTO t VALUES (1)").unwrap();
            // The body's own transaction is a savepoint inside this one.
            conn.transaction(|c| c.batch_execute("INSERT INTO t VALUES (2)"))
                .unwrap();
            Tm::rollback_transaction(&mut conn).unwrap();
            assert_eq!(count(&mut conn), 0, "{sql}: the rollback undid both");
            begin(&mut conn, sql, true).unwrap();
            conn.batch_execute("INSERT INTO t VALUES (1)").unwrap();
            commit(&mut conn, true).unwrap();
            assert_eq!(count(&mut conn), 1, "{sql}: committed");
            conn.batch_execute("DELETE FROM t").unwrap();
        }
    }

    /// Whether SQLite holds a transaction on `conn` (a second BEGIN fails).
    fn sqlite_in_transaction(conn: &mut SqliteConnection) -> bool {
        conn.batch_execute("BEGIN; ROLLBACK").is_err()
    }

    #[test]
    fn a_prepared_commit_commits_and_closes_diesels_state() {
        let mut conn = memory();
        for _ in 0..3 {
            begin(&mut conn, "BEGIN", true).unwrap();
            conn.batch_execute("INSERT INTO t VALUES (1)").unwrap();
            commit(&mut conn, true).unwrap();
            assert!(
                !sqlite_in_transaction(&mut conn),
                "SQLite still in a transaction"
            );
            // diesel knows it is closed: its own transaction is top-level.
            conn.transaction(|c| c.batch_execute("INSERT INTO t VALUES (2)"))
                .unwrap();
            assert!(!sqlite_in_transaction(&mut conn));
        }
        assert_eq!(count(&mut conn), 6);
        assert!(matches!(
            commit(&mut conn, true),
            Err(diesel::result::Error::NotInTransaction)
        ));
    }

    #[test]
    fn a_commit_with_a_savepoint_open_releases_it_as_diesel_does() {
        let mut conn = memory();
        begin(&mut conn, "BEGIN", true).unwrap();
        Tm::begin_transaction(&mut conn).unwrap(); // SAVEPOINT
        conn.batch_execute("INSERT INTO t VALUES (1)").unwrap();
        commit(&mut conn, true).unwrap(); // RELEASE SAVEPOINT
        assert!(
            sqlite_in_transaction(&mut conn),
            "the top level was committed"
        );
        commit(&mut conn, true).unwrap();
        assert!(!sqlite_in_transaction(&mut conn));
        assert_eq!(count(&mut conn), 1);
    }

    #[test]
    fn a_failed_commit_is_rolled_back_as_diesels_is() {
        let mut conn = memory();
        conn.batch_execute(
            "PRAGMA foreign_keys = ON; CREATE TABLE p (id INTEGER PRIMARY KEY); \
             CREATE TABLE c (p INTEGER REFERENCES p(id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .unwrap();
        begin(&mut conn, "BEGIN", true).unwrap();
        conn.batch_execute("INSERT INTO t VALUES (1); INSERT INTO c VALUES (7)")
            .unwrap();
        // The deferred key fails at COMMIT, which leaves the transaction open.
        let err = commit(&mut conn, true).unwrap_err();
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        assert!(!sqlite_in_transaction(&mut conn), "not rolled back");
        assert_eq!(count(&mut conn), 0, "the failed transaction's row is there");
        // diesel's state is closed and sound.
        begin(&mut conn, "BEGIN", true).unwrap();
        commit(&mut conn, true).unwrap();
    }

    #[test]
    fn a_transaction_sqlite_ended_itself_gives_the_commits_error() {
        let mut conn = memory();
        conn.batch_execute("CREATE TABLE u (x INTEGER UNIQUE); INSERT INTO u VALUES (1)")
            .unwrap();
        begin(&mut conn, "BEGIN", true).unwrap();
        // Prepared, so diesel does not see SQLite end the transaction.
        let rolled = diesel::sql_query("INSERT OR ROLLBACK INTO u VALUES (1)").execute(&mut conn);
        assert!(rolled.is_err());
        assert!(!sqlite_in_transaction(&mut conn));
        let err = commit(&mut conn, true).unwrap_err();
        assert!(
            err.to_string().contains("no transaction is active"),
            "{err:?}"
        );
        // Not `RollbackErrorOnCommit`, and diesel's state is closed again.
        begin(&mut conn, "BEGIN IMMEDIATE", true).unwrap();
        commit(&mut conn, true).unwrap();
    }

    /// Two connections to one new database file with a table `t`; the
    /// second fails at once on a lock instead of waiting.
    fn two_connections() -> (tempfile::TempDir, SqliteConnection, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("two.db");
        let url = url.to_str().unwrap();
        let mut first = SqliteConnection::establish(url).unwrap();
        first.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        let mut second = SqliteConnection::establish(url).unwrap();
        second.batch_execute("PRAGMA busy_timeout = 0").unwrap();
        (dir, first, second)
    }

    #[test]
    fn immediate_takes_the_write_lock_and_deferred_does_not() {
        let (_dir, mut first, mut second) = two_connections();
        begin(&mut first, "BEGIN IMMEDIATE", true).unwrap();
        let write = second.batch_execute("INSERT INTO t VALUES (1)");
        assert!(
            write
                .as_ref()
                .is_err_and(|e| e.to_string().contains("database is locked")),
            "the write lock was not taken at BEGIN IMMEDIATE: {write:?}"
        );
        Tm::rollback_transaction(&mut first).unwrap();
        begin(&mut first, "BEGIN", true).unwrap();
        second.batch_execute("INSERT INTO t VALUES (1)").unwrap();
        Tm::rollback_transaction(&mut first).unwrap();
    }

    #[test]
    fn other_batches_are_sent_as_they_are() {
        let mut conn = memory();
        begin(&mut conn, "BEGIN DEFERRED; PRAGMA query_only = ON", true).unwrap();
        let write = conn.batch_execute("INSERT INTO t VALUES (1)");
        assert!(write.is_err(), "query_only was not set: {write:?}");
        Tm::rollback_transaction(&mut conn).unwrap();
        conn.batch_execute("PRAGMA query_only = OFF").unwrap();
    }

    #[test]
    fn a_begin_inside_a_transaction_is_refused_by_diesel() {
        let mut conn = memory();
        begin(&mut conn, "BEGIN", true).unwrap();
        let again = begin(&mut conn, "BEGIN IMMEDIATE", true);
        assert!(
            matches!(again, Err(diesel::result::Error::AlreadyInTransaction)),
            "{again:?}"
        );
        Tm::rollback_transaction(&mut conn).unwrap();
    }

    #[test]
    fn a_failed_begin_leaves_diesels_state_closed() {
        let (_dir, mut first, mut second) = two_connections();
        begin(&mut first, "BEGIN IMMEDIATE", true).unwrap();
        let busy = begin(&mut second, "BEGIN IMMEDIATE", true);
        assert!(busy.is_err(), "{busy:?}");
        Tm::rollback_transaction(&mut first).unwrap();
        // Not `AlreadyInTransaction`: the failed BEGIN opened nothing.
        begin(&mut second, "BEGIN IMMEDIATE", true).unwrap();
        commit(&mut second, true).unwrap();
    }
}
