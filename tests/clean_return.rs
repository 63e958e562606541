//! A connection taken with `Pool::get` and returned inside a transaction it
//! did not finish is rolled back before anyone else gets it (issue 9), on
//! the three backends: the seen case (`BEGIN; INSERT` and an early return,
//! whose row the next `#[db_txn]` call on PostgreSQL committed), a test
//! transaction, and diesel transactions begun and never ended. The pool has
//! one connection, so the next call gets the very connection returned.

use std::time::Duration;

use db_txn::{db_txn, Pool, TxnConnection};
use diesel::connection::TransactionManager;
use diesel::connection::{AnsiTransactionManager, LoadConnection};
use diesel::query_builder::SqlQuery;
use diesel::query_dsl::LoadQuery;
use diesel::{QueryableByName, RunQueryDsl};

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Rows of `t` equal to `n`, read on a connection of `pool`.
fn rows<C>(pool: &Pool<C>, n: i64) -> i64
where
    C: TxnConnection + LoadConnection,
    SqlQuery: for<'a> LoadQuery<'a, C, N>,
{
    diesel::sql_query(format!("SELECT COUNT(*) AS n FROM t WHERE n = {n}"))
        .get_result::<N>(&mut *pool.get().expect("conn"))
        .expect("count")
        .n
}

#[db_txn(pool = pool)]
fn add<C: TxnConnection>(conn: &mut C, pool: &Pool<C>, n: i64) -> Result<(), db_txn::Error> {
    conn.batch_execute(&format!("INSERT INTO t (n) VALUES ({n})"))?;
    Ok(())
}

/// The seen code: a raw transaction, and an early return before COMMIT.
fn save_unless_rejected<C: TxnConnection>(
    pool: &Pool<C>,
    n: i64,
    rejected: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = pool.get()?;
    conn.batch_execute(&format!("BEGIN; INSERT INTO t (n) VALUES ({n})"))?;
    if rejected {
        return Err("rejected".into());
    }
    conn.batch_execute("COMMIT")?;
    Ok(())
}

fn clean_return<C>(pool: Pool<C>)
where
    C: TxnConnection + LoadConnection,
    SqlQuery: for<'a> LoadQuery<'a, C, N>,
{
    pool.get()
        .expect("conn")
        .batch_execute("CREATE TABLE t (n BIGINT NOT NULL)")
        .expect("schema");

    // The seen case.
    assert!(save_unless_rejected(&pool, 1, true).is_err());
    add(&pool, 2).expect("the next call runs as if nothing had been left behind");
    assert_eq!(rows(&pool, 1), 0, "the abandoned row was committed");
    assert_eq!(rows(&pool, 2), 1);

    // A test transaction does not outlive its checkout.
    {
        let mut conn = pool.get().expect("conn");
        conn.begin_test_transaction().expect("test transaction");
        conn.batch_execute("INSERT INTO t (n) VALUES (3)")
            .expect("insert");
    }
    add(&pool, 4).expect("a call after a test transaction");
    assert_eq!(
        rows(&pool, 3),
        0,
        "the test transaction's row was committed"
    );
    assert_eq!(rows(&pool, 4), 1);

    // diesel transactions begun and never ended, one inside the other.
    {
        let mut conn = pool.get().expect("conn");
        AnsiTransactionManager::begin_transaction(&mut *conn).expect("begin");
        conn.batch_execute("INSERT INTO t (n) VALUES (5)")
            .expect("insert");
        AnsiTransactionManager::begin_transaction(&mut *conn).expect("savepoint");
        conn.batch_execute("INSERT INTO t (n) VALUES (5)")
            .expect("insert");
    }
    add(&pool, 6).expect("a call after a leaked diesel transaction");
    assert_eq!(
        rows(&pool, 5),
        0,
        "the leaked transaction's rows were committed"
    );
    assert_eq!(rows(&pool, 6), 1);

    // What a raw user commits stays committed.
    save_unless_rejected(&pool, 7, false).expect("a raw transaction that commits");
    assert_eq!(rows(&pool, 7), 1);

    let s = pool.stats();
    assert_eq!(
        (s.opened, s.closed),
        (1, 0),
        "each connection was rolled back and kept, not closed: {s:?}"
    );
}

fn one_connection<C: TxnConnection>(url: String) -> Pool<C> {
    Pool::builder(url)
        .max_size(1)
        .checkout_timeout(Duration::from_secs(10))
        .build()
        .expect("pool")
}

#[cfg(feature = "sqlite")]
#[test]
fn sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = dir.path().join("clean.db").to_string_lossy().into_owned();
    clean_return(one_connection::<diesel::SqliteConnection>(url));
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb() {
    let url = db_txn_tests::MariaDb::shared().create_database("clean_return");
    clean_return(one_connection::<diesel::MysqlConnection>(url));
}

#[cfg(feature = "postgres")]
#[test]
fn postgres() {
    let url = db_txn_tests::Postgres::shared().create_database("clean_return");
    clean_return(one_connection::<diesel::PgConnection>(url));
}
