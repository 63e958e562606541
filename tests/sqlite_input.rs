//! What a SQLite pool does with its URL (issue 9): another backend's URL or
//! a bare word is refused before anything is created, an open failure names
//! the path and the cause, and `:memory:` is one database shared by the
//! pool's connections for as long as the pool lives.
#![cfg(feature = "sqlite")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use db_txn::{db_txn, Error, Pool};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::SqliteConnection;

type Sqlite = Pool<SqliteConnection>;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut SqliteConnection, sql: &str) -> QueryResult<i64> {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .map(|c| c.n)
}

/// The whole message of an error, its causes included.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

#[test]
fn another_backends_url_or_a_bare_word_is_refused_and_nothing_is_created() {
    let cases = [
        ("mysql://app:secret@db/app", "MariaDB/MySQL URL"),
        ("postgres://app@db/app", "PostgreSQL URL"),
        ("not a url", "write `./not a url`"),
    ];
    for (url, says) in cases {
        let err = Sqlite::new(url).expect_err(url);
        let Error::BadUrl {
            ref backend,
            url: ref shown,
            ref reason,
        } = err
        else {
            panic!("{url}: {err:?}");
        };
        assert_eq!(*backend, db_txn::Backend::Sqlite);
        assert!(
            !shown.contains("secret"),
            "the password is not shown: {shown}"
        );
        assert!(reason.contains(says), "{url}: {reason}");
        let msg = err.to_string();
        assert!(
            msg.contains("a SQLite pool takes"),
            "says what is accepted: {msg}"
        );

        // A lazy pool refuses every checkout at once, and opens nothing even
        // with idle connections asked for.
        let lazy: Sqlite = Pool::builder(url)
            .min_idle(2)
            .checkout_timeout(Duration::from_secs(10))
            .build_lazy();
        for _ in 0..2 {
            let started = Instant::now();
            let err = lazy.get().err().expect("a refused checkout");
            assert!(matches!(err, Error::BadUrl { .. }), "{url}: {err:?}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "refused at once, not after the checkout timeout"
            );
        }
        assert_eq!(lazy.stats().opened, 0);
    }
    std::thread::sleep(Duration::from_millis(200));
    for created in ["not a url", "mysql:", "postgres:"] {
        assert!(!Path::new(created).exists(), "`{created}` was created");
    }
}

#[db_txn(pool = pool)]
fn touch(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), Error> {
    conn.batch_execute("SELECT 1")?;
    Ok(())
}

#[test]
fn an_annotated_call_on_a_lazy_pool_with_a_bad_url_gets_the_reason() {
    let pool: Sqlite = Pool::builder("mysql://db/app").build_lazy();
    let err = touch(&pool).unwrap_err();
    assert!(err.to_string().contains("Pool<MysqlConnection>"), "{err}");
}

#[test]
fn paths_and_uris_open_the_file_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_str().unwrap();
    let cases = [
        (format!("{base}/plain.db"), "plain.db"),
        (format!("{base}/no_extension"), "no_extension"),
        (format!("file:{base}/uri.db"), "uri.db"),
        (format!("sqlite://{base}/diesel.db"), "diesel.db"),
    ];
    for (url, file) in cases {
        let pool = Sqlite::new(url.as_str()).unwrap_or_else(|e| panic!("{url}: {e}"));
        pool.get()
            .unwrap()
            .batch_execute("CREATE TABLE t (n INTEGER)")
            .unwrap();
        assert!(
            dir.path().join(file).is_file(),
            "{url} did not create {file}"
        );
    }
}

#[test]
fn a_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let url = missing.join("app.db").to_string_lossy().into_owned();
    let err = Sqlite::new(url.as_str()).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let text = chain(&err);
    assert!(text.contains(&url), "{text}");
    assert!(
        text.contains(&format!(
            "the directory `{}` does not exist",
            missing.display()
        )),
        "{text}"
    );

    // The same words reach the caller of a lazy pool.
    let lazy: Sqlite = Pool::builder(url.as_str())
        .checkout_timeout(Duration::from_millis(300))
        .build_lazy();
    let err = lazy.get().err().expect("no connection");
    assert!(chain(&err).contains("does not exist"), "{err}");
}

#[test]
fn a_file_in_the_way_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"not a directory").unwrap();
    let err = Sqlite::new(file.join("app.db").to_str().unwrap()).unwrap_err();
    let text = chain(&err);
    assert!(
        text.contains(&format!("`{}` is not a directory", file.display())),
        "{text}"
    );
    let err = Sqlite::new(dir.path().to_str().unwrap()).unwrap_err();
    assert!(chain(&err).contains("is a directory"), "{err}");
}

fn memory(max_size: u32) -> Sqlite {
    Pool::builder(":memory:")
        .max_size(max_size)
        .sqlite_busy_timeout(Duration::from_secs(10))
        .build()
        .expect("pool")
}

#[test]
fn memory_is_one_database_for_the_pools_connections() {
    let pool = memory(4);
    let mut a = pool.get().unwrap();
    let mut b = pool.get().unwrap();
    a.batch_execute("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1)")
        .unwrap();
    assert_eq!(count(&mut b, "SELECT COUNT(*) AS n FROM t").unwrap(), 1);
    b.batch_execute("INSERT INTO t VALUES (2)").unwrap();
    assert_eq!(count(&mut a, "SELECT COUNT(*) AS n FROM t").unwrap(), 2);
    drop((a, b));
    assert_eq!(pool.stats().opened, 2, "two connections, one database");

    // Each pool built from `:memory:` has a database of its own.
    let other = memory(1);
    let err = count(&mut other.get().unwrap(), "SELECT COUNT(*) AS n FROM t").unwrap_err();
    assert!(err.to_string().contains("no such table"), "{err}");
}

#[test]
fn memory_outlives_every_pooled_connection() {
    let pool: Sqlite = Pool::builder(":memory:")
        .max_lifetime(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    pool.get()
        .unwrap()
        .batch_execute("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1)")
        .unwrap();
    std::thread::sleep(Duration::from_millis(120));
    // The checkout retires the old connection and opens a new one.
    let n = count(&mut pool.get().unwrap(), "SELECT COUNT(*) AS n FROM t").unwrap();
    let s = pool.stats();
    assert!(
        s.closed >= 1 && s.opened >= 2,
        "a connection was closed: {s:?}"
    );
    assert_eq!(s.connections, 1, "{s:?}");
    assert_eq!(n, 1, "the data outlived the connection that wrote it");
}

#[db_txn(pool = pool)]
fn bump(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<(), Error> {
    let n = count(conn, "SELECT n FROM counter")?;
    diesel::sql_query(format!("UPDATE counter SET n = {}", n + 1)).execute(conn)?;
    Ok(())
}

#[db_txn(pool = pool, read_only)]
fn read(conn: &mut SqliteConnection, pool: &Sqlite) -> Result<i64, Error> {
    Ok(count(conn, "SELECT n FROM counter")?)
}

#[test]
fn concurrent_writers_and_readers_on_memory_do_not_fail() {
    let pool = Arc::new(memory(4));
    {
        // Two connections open at once: the calls below spread over both
        // (and whatever more the pool opens), whatever the scheduling.
        let mut first = pool.get().unwrap();
        let second = pool.get().unwrap();
        first
            .batch_execute(
                "CREATE TABLE counter (n BIGINT NOT NULL); INSERT INTO counter VALUES (0)",
            )
            .unwrap();
        drop((first, second));
    }
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    if i % 2 == 0 {
                        bump(&pool)?;
                    } else {
                        read(&pool)?;
                    }
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread").expect("every call succeeds");
    }
    assert_eq!(read(&pool).unwrap(), 100, "4 writers x 25, no update lost");
    assert!(pool.stats().opened > 1, "{:?}", pool.stats());
}
