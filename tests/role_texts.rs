//! Role changes against the real client libraries: a write refused by a
//! read-only server is classified [`Disconnect::ReadOnly`] (MariaDB 1290,
//! PostgreSQL 25006 on a fenced primary and on a standby), a write inside a
//! `read_only` function stays the function's own error, and a pool refuses a
//! read-only server unless told otherwise. The texts seen are printed
//! (`--nocapture`) so the tables in `runtime/src/backend/*/errors.rs` can be
//! checked against them.
#![cfg(all(feature = "mysql", feature = "postgres"))]

use std::time::{Duration, Instant};

use db_txn::{classify, db_txn, Backend, Disconnect, ErrorClass, Pool};
use db_txn_tests::{MariaDb, Postgres};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::{MysqlConnection, PgConnection};

fn expect_read_only(backend: Backend, what: &str, err: &diesel::result::Error) {
    let class = classify(backend, err);
    eprintln!("{backend:?} {what}: {err:?} -> {class:?}");
    assert_eq!(
        class,
        ErrorClass::Disconnect(Disconnect::ReadOnly),
        "{what}"
    );
}

#[test]
fn mariadb_read_only_server_refuses_with_1290() {
    let server = MariaDb::start_primary().unwrap();
    let mut conn = MysqlConnection::establish(&server.url()).unwrap();
    conn.batch_execute("CREATE TABLE t (id INT PRIMARY KEY)")
        .unwrap();
    server.set_read_only(true);
    let err = conn.batch_execute("INSERT INTO t VALUES (1)").unwrap_err();
    expect_read_only(Backend::Mysql, "write on a read-only server", &err);
    // At COMMIT: the write came first, then the server turned read-only.
    server.set_read_only(false);
    conn.batch_execute("START TRANSACTION; INSERT INTO t VALUES (2)")
        .unwrap();
    server.set_read_only(true);
    let err = conn.batch_execute("COMMIT").unwrap_err();
    expect_read_only(Backend::Mysql, "COMMIT on a server turned read-only", &err);
    server.set_read_only(false);
    assert_eq!(
        server.query_i64("SELECT COUNT(*) FROM test.t"),
        0,
        "the refused COMMIT committed nothing"
    );
}

#[test]
fn postgres_fenced_primary_and_standby_refuse_with_25006() {
    let primary = Postgres::start().unwrap();
    primary.exec_in("test", "CREATE TABLE t (id INT)");
    let standby = primary.start_standby().unwrap();
    let mut on_standby = PgConnection::establish(&standby.url()).unwrap();
    let err = on_standby
        .batch_execute("INSERT INTO t VALUES (1)")
        .unwrap_err();
    expect_read_only(Backend::Postgres, "write on a standby", &err);

    let mut client = PgConnection::establish(&primary.url()).unwrap();
    primary.set_read_only(true);
    let err = client
        .batch_execute("INSERT INTO t VALUES (2)")
        .unwrap_err();
    expect_read_only(Backend::Postgres, "write on a fenced primary", &err);
}

#[db_txn(pool = pool, read_only, retry = 3)]
fn write_in_read_only_pg(
    conn: &mut PgConnection,
    pool: &Pool<PgConnection>,
) -> Result<(), db_txn::Error> {
    conn.batch_execute("INSERT INTO t VALUES (1)")?;
    Ok(())
}

#[db_txn(pool = pool, read_only, retry = 3)]
fn write_in_read_only_mysql(
    conn: &mut MysqlConnection,
    pool: &Pool<MysqlConnection>,
) -> Result<(), db_txn::Error> {
    conn.batch_execute("INSERT INTO t VALUES (1)")?;
    Ok(())
}

/// PostgreSQL reports a write inside `BEGIN READ ONLY` with the same 25006 as
/// a read-only server: inside a `read_only` function it is the body's own
/// error, returned at once, with no retry and the connection kept.
#[test]
fn a_write_in_a_read_only_function_is_its_own_error() {
    let pg = Postgres::shared();
    let url = pg.create_database("ro_own_error");
    pg.exec_in("ro_own_error", "CREATE TABLE t (id INT)");
    let pool = Pool::<PgConnection>::new(url).unwrap();
    let err = write_in_read_only_pg(&pool).unwrap_err();
    eprintln!("PostgreSQL: {err:?}");
    assert!(matches!(err, db_txn::Error::Query(_)), "{err:?}");
    let s = pool.stats();
    assert_eq!(
        (s.retries, s.disconnects, s.role_mismatches, s.closed),
        (0, 0, 0, 0),
        "{s:?}"
    );

    let my = MariaDb::shared();
    let url = my.create_database("ro_own_error");
    my.exec("CREATE TABLE ro_own_error.t (id INT)");
    let pool = Pool::<MysqlConnection>::new(url).unwrap();
    let err = write_in_read_only_mysql(&pool).unwrap_err();
    eprintln!("MariaDB: {err:?}");
    assert!(matches!(err, db_txn::Error::Query(_)), "{err:?}");
    let s = pool.stats();
    assert_eq!(
        (s.retries, s.disconnects, s.role_mismatches, s.closed),
        (0, 0, 0, 0),
        "{s:?}"
    );
}

/// A pool refuses a read-only server at start-up (within the checkout
/// timeout, saying why), unless `require_writable(false)`.
#[test]
fn a_pool_refuses_a_read_only_server_unless_told() {
    let primary = Postgres::start().unwrap();
    let standby = primary.start_standby().unwrap();
    let started = Instant::now();
    let err = Pool::<PgConnection>::builder(standby.url())
        .checkout_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    let took = started.elapsed();
    eprintln!(
        "a standby as primary: {err} ({:?}) after {took:?}",
        std::error::Error::source(&err).map(ToString::to_string)
    );
    assert!(matches!(err, db_txn::Error::Connect { .. }), "{err:?}");
    let cause = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(
        cause.contains("read-only") && cause.contains("require_writable(false)"),
        "{cause}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    let pool = Pool::<PgConnection>::builder(standby.url())
        .require_writable(false)
        .build()
        .expect("a pool for a read-only server");
    assert_eq!(pool.get().unwrap().batch_execute("SELECT 1"), Ok(()));

    let server = MariaDb::start_primary().unwrap();
    server.set_read_only(true);
    let err = Pool::<MysqlConnection>::builder(server.url())
        .checkout_timeout(Duration::from_secs(2))
        .build()
        .unwrap_err();
    assert!(matches!(err, db_txn::Error::Connect { .. }), "{err:?}");
    Pool::<MysqlConnection>::builder(server.url())
        .require_writable(false)
        .build()
        .expect("a pool for a read-only server");
}
