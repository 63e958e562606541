//! The core contract of `#[db_txn]` on embedded SQLite (a temp-file database):
//! commit, rollback on error and panic, release, sessions, retries of nothing
//! (SQLite has no link to lose), errors for an exhausted pool.
#![cfg(feature = "sqlite")]

use std::time::Duration;

use db_txn::{db_txn, Error, Pool};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::SqliteConnection;

type Sqlite = Pool<SqliteConnection>;

fn pool(max_size: u32) -> (tempfile::TempDir, Sqlite) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("core.db");
    let pool: Sqlite = Pool::builder(path.to_str().expect("utf-8 path"))
        .max_size(max_size)
        .checkout_timeout(Duration::from_millis(300))
        .build()
        .expect("pool");
    pool.get()
        .expect("conn")
        .batch_execute("CREATE TABLE items (name TEXT NOT NULL); CREATE TABLE counter (n BIGINT NOT NULL); INSERT INTO counter VALUES (0);")
        .expect("schema");
    (dir, pool)
}

#[derive(Debug)]
enum AppError {
    Db(diesel::result::Error),
    Txn(Error),
    Rejected(&'static str),
}
impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        AppError::Db(e)
    }
}
impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::Txn(e)
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(pool: &Sqlite, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(&mut *pool.get().expect("conn"))
        .expect("count")
        .n
}

fn items(pool: &Sqlite) -> i64 {
    count(pool, "SELECT COUNT(*) AS n FROM items")
}

fn insert(conn: &mut SqliteConnection, name: &str) -> QueryResult<usize> {
    diesel::sql_query("INSERT INTO items (name) VALUES (?)")
        .bind::<Text, _>(name)
        .execute(conn)
}

/// Every connection the pool opened is idle again, and none was closed.
fn assert_all_idle(pool: &Sqlite) {
    let s = pool.stats();
    assert_eq!(
        s.connections, s.idle_connections,
        "connections still checked out: {s:?}"
    );
}

#[db_txn(pool = pool)]
fn add(conn: &mut SqliteConnection, pool: &Sqlite, name: &str) -> Result<(), AppError> {
    insert(conn, name)?;
    Ok(())
}

#[db_txn(pool = pool)]
fn add_then_fail(conn: &mut SqliteConnection, pool: &Sqlite, name: &str) -> Result<(), AppError> {
    insert(conn, name)?;
    Err(AppError::Rejected("business rule"))
}

#[db_txn(pool = pool)]
fn add_then_panic(conn: &mut SqliteConnection, pool: &Sqlite, name: &str) -> Result<(), AppError> {
    insert(conn, name)?;
    panic!("boom after inserting {name}");
}

#[test]
fn ok_commits_and_releases() {
    let (_dir, pool) = pool(2);
    add(&pool, "a").unwrap();
    assert_eq!(items(&pool), 1);
    assert_all_idle(&pool);
    assert_eq!(pool.stats().rollbacks, 0);
}

#[test]
fn err_rolls_back_and_releases() {
    let (_dir, pool) = pool(2);
    let err = add_then_fail(&pool, "a").unwrap_err();
    assert!(
        matches!(err, AppError::Rejected("business rule")),
        "{err:?}"
    );
    assert_eq!(items(&pool), 0, "the insert must be rolled back");
    assert_all_idle(&pool);
    assert_eq!(pool.stats().rollbacks, 1);
}

#[test]
fn panic_rolls_back_and_keeps_the_connection() {
    let (_dir, pool) = pool(1);
    let before = pool.stats();
    assert_eq!((before.opened, before.closed), (1, 0));
    let caught = std::panic::catch_unwind(|| add_then_panic(&pool, "a"));
    let payload = caught.expect_err("the panic must reach the caller");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("boom after inserting a")
    );
    assert_eq!(items(&pool), 0, "the insert must be rolled back");
    // The same connection served before and after: nothing opened or closed.
    let after = pool.stats();
    assert_eq!((after.opened, after.closed), (1, 0), "{after:?}");
    assert_eq!((after.connections, after.idle_connections), (1, 1));
    add(&pool, "b").unwrap();
    assert_eq!(pool.stats().opened, 1);
}

#[db_txn(pool = pool)]
fn break_the_rollback(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    insert(conn, "x")?;
    // Ends the transaction behind diesel's back: the ROLLBACK that follows fails.
    conn.batch_execute("COMMIT")?;
    Err(AppError::Rejected("after commit"))
}

#[test]
fn failed_rollback_discards_the_connection() {
    let (_dir, pool) = pool(1);
    let err = break_the_rollback(&pool).unwrap_err();
    assert!(matches!(err, AppError::Rejected("after commit")), "{err:?}");
    let s = pool.stats();
    assert_eq!(
        s.closed, 1,
        "the connection whose ROLLBACK failed is closed: {s:?}"
    );
    assert_eq!(s.connections, 0, "{s:?}");
    // The pool opens a fresh one for the next call.
    add(&pool, "y").unwrap();
    let s = pool.stats();
    assert_eq!(
        (s.opened, s.connections, s.idle_connections),
        (2, 1, 1),
        "{s:?}"
    );
}

#[db_txn(pool = pool)]
fn early_return(
    conn: &mut SqliteConnection,
    pool: &Sqlite,
    names: &[&str],
) -> Result<usize, AppError> {
    let mut n = 0;
    for name in names {
        if name.is_empty() {
            return Err(AppError::Rejected("empty name"));
        }
        if *name == "stop" {
            return Ok(n);
        }
        n += insert(conn, name)?;
    }
    Ok(n)
}

#[test]
fn question_mark_and_return_behave_as_written() {
    let (_dir, pool) = pool(1);
    assert_eq!(early_return(&pool, &["a", "b", "stop", "c"]).unwrap(), 2);
    assert_eq!(items(&pool), 2, "early Ok commits what came before");
    assert!(matches!(
        early_return(&pool, &["d", ""]),
        Err(AppError::Rejected("empty name"))
    ));
    assert_eq!(items(&pool), 2, "early Err rolls back");
    // `?` on a diesel error: the table does not exist.
    let err = missing_table(&pool).unwrap_err();
    assert!(matches!(err, AppError::Db(_)), "{err:?}");
    assert_all_idle(&pool);
}

#[db_txn(pool = pool)]
fn missing_table(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    insert(conn, "before")?;
    diesel::sql_query("INSERT INTO nope VALUES (1)").execute(conn)?;
    Ok(())
}

// --- sessions -------------------------------------------------------------

#[db_txn(pool = pool)]
fn outer_with_inner_failure(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    insert(conn, "outer-1")?;
    let inner = db_txn::lend(conn, || add_then_fail(pool, "inner"));
    assert!(matches!(inner, Err(AppError::Rejected(_))));
    db_txn::lend(conn, || add(pool, "inner-ok"))?;
    insert(conn, "outer-2")?;
    Ok(())
}

#[test]
fn nested_call_rolls_back_to_its_savepoint_and_the_outer_goes_on() {
    let (_dir, pool) = pool(1);
    let checkouts = pool.stats().checkouts;
    // A pool of one: a nested call that checked out a second connection would time out.
    outer_with_inner_failure(&pool).unwrap();
    let names: Vec<String> = diesel::sql_query("SELECT name FROM items ORDER BY rowid")
        .load::<Name>(&mut *pool.get().unwrap())
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["outer-1", "inner-ok", "outer-2"]);
    assert_eq!(
        pool.stats().checkouts - checkouts,
        2,
        "one for the call, one for this read"
    );
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[db_txn(pool = pool)]
fn outer_then_fail(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    db_txn::lend(conn, || add(pool, "joined"))?;
    Err(AppError::Rejected("outer fails"))
}

#[test]
fn a_joined_call_commits_only_with_the_outer_transaction() {
    let (_dir, pool) = pool(1);
    assert!(outer_then_fail(&pool).is_err());
    assert_eq!(
        items(&pool),
        0,
        "the joined insert is rolled back with the outer"
    );
}

#[db_txn(pool = pool)]
fn outer_calls_without_lending(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    insert(conn, "outer")?;
    add(pool, "inner")
}

#[test]
fn a_call_on_a_busy_connection_says_how_to_join() {
    let (_dir, pool) = pool(2);
    let err = outer_calls_without_lending(&pool).unwrap_err();
    let AppError::Txn(e @ Error::ConnectionBorrowed { .. }) = &err else {
        panic!("expected ConnectionBorrowed, got {err:?}")
    };
    let msg = e.to_string();
    assert!(
        msg.contains("core_sqlite::add") && msg.contains("db_txn::lend"),
        "{msg}"
    );
    assert_eq!(items(&pool), 0);
    assert_all_idle(&pool);
}

#[db_txn(pool = pool, requires_new)]
fn audit(conn: &mut SqliteConnection, pool: &Sqlite, what: &str) -> Result<(), AppError> {
    insert(conn, what)?;
    Ok(())
}

#[db_txn(pool = pool, read_only)]
fn outer_with_audit(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    // SQLite allows one writer at a time: a read-only outer transaction does
    // not hold the write lock, so the audit (its own connection) can commit.
    db_txn::lend(conn, || audit(pool, "attempted"))?;
    let _ = count_in(conn)?;
    Err(AppError::Rejected("outer fails"))
}

fn count_in(conn: &mut SqliteConnection) -> QueryResult<i64> {
    diesel::sql_query("SELECT COUNT(*) AS n FROM items")
        .get_result::<Count>(conn)
        .map(|c| c.n)
}

#[test]
fn requires_new_commits_on_its_own_connection() {
    let (_dir, pool) = pool(2);
    assert!(outer_with_audit(&pool).is_err());
    let names: Vec<String> = diesel::sql_query("SELECT name FROM items")
        .load::<Name>(&mut *pool.get().unwrap())
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(
        names,
        ["attempted"],
        "the audit row survives the outer rollback"
    );
    assert_eq!(
        pool.stats().opened,
        2,
        "requires_new used a second connection"
    );
    let s = pool.stats();
    assert_eq!(s.rollbacks, 1, "only the outer rolled back: {s:?}");
    assert_all_idle(&pool);
}

#[test]
fn annotated_calls_run_inside_a_test_transaction() {
    let (_dir, pool) = pool(2);
    let mut conn = pool.get().unwrap();
    conn.begin_test_transaction().unwrap();
    let checkouts = pool.stats().checkouts;
    db_txn::lend(&mut *conn, || add(&pool, "in-test")).unwrap();
    assert_eq!(
        count_in(&mut conn).unwrap(),
        1,
        "visible inside the test transaction"
    );
    assert_eq!(
        pool.stats().checkouts,
        checkouts,
        "the annotated call used the lent connection"
    );
    // The test transaction is never committed: another connection sees nothing.
    assert_eq!(items(&pool), 0);
}

#[test]
fn helpers_reach_the_lent_connection() {
    let (_dir, pool) = pool(1);
    let mut conn = pool.get().unwrap();
    let n = db_txn::lend(&mut *conn, || {
        db_txn::with_connection(|c: &mut SqliteConnection| insert(c, "via helper"))
    })
    .unwrap()
    .unwrap();
    assert_eq!(n, 1);
    let err = db_txn::with_connection(|c: &mut SqliteConnection| insert(c, "x")).unwrap_err();
    assert!(matches!(err, Error::NoSession { .. }), "{err:?}");
}

// --- options ----------------------------------------------------------------

#[db_txn(pool = pool, read_only)]
fn read_only_insert(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    insert(conn, "nope")?;
    Ok(())
}

#[db_txn(pool = pool, isolation = read_committed)]
fn weak_isolation(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    insert(conn, "nope")?;
    Ok(())
}

#[db_txn(pool = pool, timeout = "1s")]
fn with_timeout(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    insert(conn, "nope")?;
    Ok(())
}

#[test]
fn read_only_is_enforced_and_reset() {
    let (_dir, pool) = pool(1);
    let err = read_only_insert(&pool).unwrap_err();
    let AppError::Db(e) = &err else {
        panic!("{err:?}")
    };
    assert!(e.to_string().contains("readonly"), "{e}");
    // The same connection writes again afterwards: query_only was reset.
    add(&pool, "after").unwrap();
    assert_eq!(items(&pool), 1);
    assert_eq!(pool.stats().opened, 1);
}

#[test]
fn options_sqlite_cannot_honour_fail_at_the_first_call() {
    let (_dir, pool) = pool(1);
    for err in [
        weak_isolation(&pool).unwrap_err(),
        with_timeout(&pool).unwrap_err(),
    ] {
        let AppError::Txn(e @ Error::Unsupported { .. }) = &err else {
            panic!("{err:?}")
        };
        assert!(e.to_string().starts_with("`core_sqlite::"), "{e}");
    }
    assert_eq!(items(&pool), 0);
    assert_all_idle(&pool);
}

// --- pool limits ------------------------------------------------------------

#[test]
fn exhausted_pool_fails_after_the_checkout_timeout() {
    let (_dir, pool) = pool(1);
    let held = pool.get().unwrap();
    let started = std::time::Instant::now();
    let err = add(&pool, "x").unwrap_err();
    let waited = started.elapsed();
    let AppError::Txn(
        e @ Error::Checkout {
            last_error: None, ..
        },
    ) = &err
    else {
        panic!("expected an exhausted-pool error, got {err:?}")
    };
    assert!(e.to_string().contains("exhausted"), "{e}");
    assert!(
        waited >= Duration::from_millis(300),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "hung for {waited:?}");
    drop(held);
    add(&pool, "y").unwrap();
}

#[db_txn(pool = pool)]
fn bump(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), AppError> {
    // Read-modify-write: lost updates would show in the final count.
    let c: Count = diesel::sql_query("SELECT n FROM counter").get_result(conn)?;
    diesel::sql_query("UPDATE counter SET n = ?")
        .bind::<BigInt, _>(c.n + 1)
        .execute(conn)?;
    insert(conn, "x")?;
    Ok(())
}

#[test]
fn eight_threads_two_hundred_calls_pool_of_four() {
    let (_dir, pool) = pool(4);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..200 {
                    bump(&pool).expect("bump");
                }
            });
        }
    });
    assert_eq!(count(&pool, "SELECT n FROM counter"), 1600);
    assert_eq!(items(&pool), 1600);
    let s = pool.stats();
    assert!(s.opened <= 4, "{s:?}");
    assert_eq!(s.closed, 0, "{s:?}");
    // `bump` reads, then writes: begun deferred, its first write can find
    // the database locked; that attempt begins again with BEGIN IMMEDIATE,
    // and the function is remembered, so this happens at most a few times.
    assert!(s.retries <= 8, "the upgrade is remembered: {s:?}");
    assert_all_idle(&pool);
}

#[db_txn(pool = pool)]
fn read_counter(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<i64, AppError> {
    Ok(diesel::sql_query("SELECT n FROM counter")
        .get_result::<Count>(conn)?
        .n)
}

/// A function that only reads begins deferred: it reads the last committed
/// state at once while another connection holds the write lock, instead of
/// waiting behind it (as `BEGIN IMMEDIATE` would, up to the busy timeout).
#[test]
fn a_reader_does_not_wait_for_a_writer() {
    let (_dir, pool) = pool(2);
    let mut writer = pool.get().expect("conn");
    writer
        .batch_execute("BEGIN IMMEDIATE; UPDATE counter SET n = 42")
        .expect("writer holds the lock");
    let started = std::time::Instant::now();
    assert_eq!(read_counter(&pool).expect("read"), 0, "the committed state");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "waited {:?} behind the writer",
        started.elapsed()
    );
    writer.batch_execute("ROLLBACK").expect("rollback");
}

// --- diesel's own QueryResult ------------------------------------------------

#[db_txn(pool = pool)]
fn add_query_result(conn: &mut SqliteConnection, pool: &Sqlite, name: &str) -> QueryResult<usize> {
    insert(conn, name)
}

#[test]
fn functions_returning_query_result_work() {
    let (_dir, pool) = pool(1);
    assert_eq!(add_query_result(&pool, "q").unwrap(), 1);
    let held = pool.get().unwrap();
    let err = add_query_result(&pool, "r").unwrap_err();
    assert!(err.to_string().contains("exhausted"), "{err}");
    drop(held);
    assert_eq!(items(&pool), 1);
}

// --- leak detection ------------------------------------------------------------

#[db_txn(pool = pool)]
fn hold_for(conn: &mut SqliteConnection, pool: &Sqlite, d: Duration) -> Result<(), AppError> {
    insert(conn, "held")?;
    std::thread::sleep(d);
    Ok(())
}

#[test]
fn a_connection_held_past_the_leak_threshold_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let pool: Sqlite = Pool::builder(dir.path().join("leak.db").to_str().unwrap())
        .leak_threshold(Some(Duration::from_millis(100)))
        .build()
        .unwrap();
    pool.get()
        .unwrap()
        .batch_execute("CREATE TABLE items (name TEXT NOT NULL)")
        .unwrap();
    hold_for(&pool, Duration::from_millis(10)).unwrap();
    assert_eq!(pool.stats().leaks, 0, "a short call is no leak");
    hold_for(&pool, Duration::from_millis(600)).unwrap();
    assert_eq!(pool.stats().leaks, 1, "reported once while held");
    let held = pool.get().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        pool.stats().leaks,
        2,
        "a connection taken with Pool::get too"
    );
    drop(held);
}
