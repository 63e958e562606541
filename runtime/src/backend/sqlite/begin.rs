//! BEGIN on a `SqliteConnection`, prepared once per connection.
//!
//! diesel sends BEGIN as a batch (`sqlite3_exec`), which SQLite parses and
//! compiles on every call. The two plain BEGINs the runner uses (`BEGIN`
//! and `BEGIN IMMEDIATE`) go through diesel's statement cache instead,
//! compiled once per connection: about 590 client instructions fewer per
//! transaction (of 12,700 in a point-read), net of the cache's lookup and
//! of the empty batch below (callgrind, BENCHMARKS.md). diesel's transaction manager still has to know that a
//! transaction is open (for the body's own `transaction` calls, which then
//! take savepoints, and for COMMIT): it is told with an empty batch, which
//! SQLite returns from at once. COMMIT stays diesel's batch: only diesel's
//! `commit_transaction` may close its transaction state.
//!
//! What a user's own diesel instrumentation sees at a top-level BEGIN: the
//! `BeginTransaction` event, an empty statement, then the BEGIN as a
//! statement of its own.

use diesel::connection::AnsiTransactionManager as Tm;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sqlite::Sqlite;
use diesel::{QueryResult, RunQueryDsl, SqliteConnection};

/// `BEGIN` (deferred).
#[derive(Debug, Clone, Copy)]
struct Deferred;

/// `BEGIN IMMEDIATE`.
#[derive(Debug, Clone, Copy)]
struct Immediate;

macro_rules! prepared_begin {
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

prepared_begin!(Deferred, "BEGIN");
prepared_begin!(Immediate, "BEGIN IMMEDIATE");

/// Begin the top-level transaction whose batch is `sql`: prepared when it
/// is one of the two plain BEGINs, as a batch otherwise (`read_only`'s
/// pragmas). diesel's state is opened first, so that a connection diesel
/// holds in a transaction already (or broken) gets diesel's error and no
/// BEGIN is sent.
#[inline]
pub(in crate::backend) fn begin(conn: &mut SqliteConnection, sql: &str) -> QueryResult<()> {
    match sql {
        "BEGIN" => prepared(conn, Deferred),
        "BEGIN IMMEDIATE" => prepared(conn, Immediate),
        _ => Tm::begin_transaction_sql(conn, sql),
    }
}

/// Opens diesel's transaction state, then sends `begin` from the cache.
#[inline]
fn prepared<B>(conn: &mut SqliteConnection, begin: B) -> QueryResult<()>
where
    B: RunQueryDsl<SqliteConnection> + diesel::query_dsl::methods::ExecuteDsl<SqliteConnection>,
{
    Tm::begin_transaction_sql(conn, "")?;
    // A failure leaves diesel's state open without a transaction: the
    // runner does not reuse a connection whose BEGIN failed.
    begin.execute(conn).map(drop)
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
            begin(&mut conn, sql).unwrap();
            conn.batch_execute("INSERT INTO t VALUES (1)").unwrap();
            // The body's own transaction is a savepoint inside this one.
            conn.transaction(|c| c.batch_execute("INSERT INTO t VALUES (2)"))
                .unwrap();
            Tm::rollback_transaction(&mut conn).unwrap();
            assert_eq!(count(&mut conn), 0, "{sql}: the rollback undid both");
            begin(&mut conn, sql).unwrap();
            conn.batch_execute("INSERT INTO t VALUES (1)").unwrap();
            Tm::commit_transaction(&mut conn).unwrap();
            assert_eq!(count(&mut conn), 1, "{sql}: committed");
            conn.batch_execute("DELETE FROM t").unwrap();
        }
    }

    #[test]
    fn immediate_takes_the_write_lock_and_deferred_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().join("lock.db");
        let url = url.to_str().unwrap();
        let mut first = SqliteConnection::establish(url).unwrap();
        first.batch_execute("CREATE TABLE t (x INTEGER)").unwrap();
        let mut second = SqliteConnection::establish(url).unwrap();
        // The second connection fails at once instead of waiting.
        second.batch_execute("PRAGMA busy_timeout = 0").unwrap();
        begin(&mut first, "BEGIN IMMEDIATE").unwrap();
        let write = second.batch_execute("INSERT INTO t VALUES (1)");
        assert!(
            write
                .as_ref()
                .is_err_and(|e| e.to_string().contains("database is locked")),
            "the write lock was not taken at BEGIN IMMEDIATE: {write:?}"
        );
        Tm::rollback_transaction(&mut first).unwrap();
        begin(&mut first, "BEGIN").unwrap();
        second.batch_execute("INSERT INTO t VALUES (1)").unwrap();
        Tm::rollback_transaction(&mut first).unwrap();
    }

    #[test]
    fn other_batches_are_sent_as_they_are() {
        let mut conn = memory();
        begin(&mut conn, "BEGIN DEFERRED; PRAGMA query_only = ON").unwrap();
        let write = conn.batch_execute("INSERT INTO t VALUES (1)");
        assert!(write.is_err(), "query_only was not set: {write:?}");
        Tm::rollback_transaction(&mut conn).unwrap();
        conn.batch_execute("PRAGMA query_only = OFF").unwrap();
    }

    #[test]
    fn a_begin_inside_a_transaction_is_refused_by_diesel() {
        let mut conn = memory();
        begin(&mut conn, "BEGIN").unwrap();
        let again = begin(&mut conn, "BEGIN IMMEDIATE");
        assert!(
            matches!(again, Err(diesel::result::Error::AlreadyInTransaction)),
            "{again:?}"
        );
        Tm::rollback_transaction(&mut conn).unwrap();
    }
}
