//! A call that needs a transaction of its own on a SQLite database its
//! caller on the same thread is writing to fails at once, saying why and
//! what to do (issue 9). It used to wait out the whole busy timeout for its
//! own caller and then report "database is locked". The calls SQLite can
//! serve stay allowed: in WAL mode a `read_only` inner call, and any inner
//! call under a `read_only` caller.
#![cfg(feature = "sqlite")]

use std::time::{Duration, Instant};

use db_txn::{db_txn, Error, Pool};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::SqliteConnection;

type Sqlite = Pool<SqliteConnection>;

/// Long enough that a call waiting it out could not pass for one refused
/// at once.
const BUSY: Duration = Duration::from_secs(4);

fn pool_on(url: &str, max_size: u32, wal: bool) -> Sqlite {
    let pool: Sqlite = Pool::builder(url)
        .max_size(max_size)
        .sqlite_busy_timeout(BUSY)
        .sqlite_wal(wal)
        .checkout_timeout(BUSY)
        .build()
        .expect("pool");
    pool.get()
        .unwrap()
        .batch_execute("CREATE TABLE IF NOT EXISTS items (name TEXT NOT NULL)")
        .unwrap();
    pool
}

fn file_pool(dir: &tempfile::TempDir, max_size: u32, wal: bool) -> Sqlite {
    pool_on(dir.path().join("w.db").to_str().unwrap(), max_size, wal)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn items(pool: &Sqlite, name: &str) -> i64 {
    diesel::sql_query(format!(
        "SELECT COUNT(*) AS n FROM items WHERE name = '{name}'"
    ))
    .get_result::<Count>(&mut *pool.get().unwrap())
    .unwrap()
    .n
}

fn insert(conn: &mut SqliteConnection, name: &str) -> QueryResult<()> {
    conn.batch_execute(&format!("INSERT INTO items VALUES ('{name}')"))
}

#[db_txn(pool = pool, requires_new)]
fn audit(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), Error> {
    insert(conn, "audit")?;
    Ok(())
}

#[db_txn(pool = pool, requires_new, read_only)]
fn peek(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<i64, Error> {
    let c: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM items").get_result(conn)?;
    Ok(c.n)
}

/// Writes, then runs `inner` and commits whatever it returned.
#[db_txn(pool = pool)]
fn writer<T>(
    conn: &mut SqliteConnection,
    pool: &Sqlite,
    inner: &dyn Fn() -> Result<T, Error>,
) -> Result<(Result<T, Error>, Duration), Error> {
    insert(conn, "outer")?;
    let started = Instant::now();
    let result = inner();
    Ok((result, started.elapsed()))
}

#[db_txn(pool = pool, read_only)]
fn reader<T>(
    conn: &mut SqliteConnection,
    pool: &Sqlite,
    inner: &dyn Fn() -> Result<T, Error>,
) -> Result<(Result<T, Error>, Duration), Error> {
    diesel::sql_query("SELECT COUNT(*) AS n FROM items").get_result::<Count>(conn)?;
    let started = Instant::now();
    let result = inner();
    Ok((result, started.elapsed()))
}

/// The inner call's error, which must have come at once.
fn refused<T: std::fmt::Debug>((result, took): (Result<T, Error>, Duration)) -> Error {
    assert!(took < BUSY / 4, "refused after {took:?}, not at once");
    result.expect_err("refused")
}

#[test]
fn requires_new_under_a_writer_fails_at_once_and_says_what_to_do() {
    for max_size in [2, 1] {
        let dir = tempfile::tempdir().unwrap();
        let pool = file_pool(&dir, max_size, true);
        let err = refused(writer(&pool, &|| audit(&pool)).unwrap());
        let Error::LockedByCaller {
            function,
            holder,
            caller_writes,
            wal,
        } = &err
        else {
            panic!("pool of {max_size}: {err:?}");
        };
        assert!(
            function.ends_with("::audit") && holder.ends_with("::writer"),
            "{err}"
        );
        assert!(*caller_writes && *wal, "{err:?}");
        let msg = err.to_string();
        for says in [
            "one writer at a time",
            "db_txn::lend",
            "make `sqlite_one_writer::audit` `read_only`",
            "after `sqlite_one_writer::writer` has committed",
        ] {
            assert!(msg.contains(says), "missing {says:?}: {msg}");
        }
        assert_eq!(items(&pool, "outer"), 1, "the caller went on and committed");
        assert_eq!(items(&pool, "audit"), 0);
        let s = pool.stats();
        assert_eq!(s.connections, s.idle_connections, "nothing held: {s:?}");
    }
}

#[test]
fn what_wal_serves_stays_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let pool = file_pool(&dir, 2, true);
    // A read-only inner call under a writer reads what was committed.
    let (seen, _) = writer(&pool, &|| peek(&pool)).unwrap();
    assert_eq!(
        seen.expect("read-only inner call"),
        0,
        "not the caller's row"
    );
    // A writing inner call under a read-only caller commits on its own.
    let (done, _) = reader(&pool, &|| audit(&pool)).unwrap();
    done.expect("writer under a read-only caller");
    assert_eq!(items(&pool, "audit"), 1);
    // Calls after the caller returned are not affected.
    audit(&pool).unwrap();
    assert_eq!(items(&pool, "audit"), 2);
}

#[test]
fn without_wal_readers_and_the_writer_block_each_other() {
    let memory = pool_on(":memory:", 2, true);
    let err = refused(writer(&memory, &|| peek(&memory)).unwrap());
    assert!(
        matches!(
            err,
            Error::LockedByCaller {
                caller_writes: true,
                wal: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("without WAL"), "{err}");
    assert!(
        !err.to_string().contains("`read_only`,"),
        "no advice that cannot work: {err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let rollback = file_pool(&dir, 2, false);
    let err = refused(reader(&rollback, &|| audit(&rollback)).unwrap());
    assert!(
        matches!(
            err,
            Error::LockedByCaller {
                caller_writes: false,
                wal: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("keeps any writer from committing"),
        "{err}"
    );
    // Both read-only: allowed.
    let (n, _) = reader(&rollback, &|| peek(&rollback)).unwrap();
    assert_eq!(n.unwrap(), 0);
}

#[db_txn(pool = pool)]
fn plain_add(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), Error> {
    insert(conn, "other pool")?;
    Ok(())
}

#[test]
fn another_pool_on_the_same_file_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let a = file_pool(&dir, 2, true);
    let b = file_pool(&dir, 2, true);
    let err = refused(writer(&a, &|| plain_add(&b)).unwrap());
    assert!(matches!(err, Error::LockedByCaller { .. }), "{err:?}");
    // Another file is another database.
    let elsewhere = tempfile::tempdir().unwrap();
    let c = file_pool(&elsewhere, 2, true);
    let (done, _) = writer(&a, &|| plain_add(&c)).unwrap();
    done.expect("a different database");
}
