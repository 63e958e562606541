//! The options and sessions of the async form, on real servers: isolation,
//! read-only, timeout, `retry = 0`, `requires_new`, nesting through
//! `lend_async`, `with_connection_async`, and what they refuse.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use db_txn::{db_txn, AsyncPool, Error};
use db_txn_async_tests::ledger::schema;
use db_txn_async_tests::AsyncServer;
use db_txn_tests::{MariaDb, Postgres};
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

type Pg = AsyncPgConnection;

#[derive(QueryableByName)]
struct S {
    #[diesel(sql_type = Text)]
    s: String,
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn pg_pool(name: &str, max_size: u32) -> AsyncPool<Pg> {
    let url = AsyncServer::create_database(Postgres::shared(), name);
    let pool = AsyncPool::<Pg>::builder(url.clone())
        .max_size(max_size)
        .checkout_timeout(Duration::from_secs(2))
        .build()
        .await
        .expect("pool");
    pool.get()
        .await
        .expect("conn")
        .batch_execute(&schema())
        .await
        .expect("schema");
    pool
}

async fn count(pool: &AsyncPool<Pg>, sql: &str) -> i64 {
    let mut conn = pool.get().await.expect("conn");
    diesel::sql_query(sql)
        .get_result::<N>(&mut *conn)
        .await
        .expect("count")
        .n
}

#[db_txn(pool = pool, isolation = serializable, read_only, timeout = "1500ms")]
async fn settings(conn: &mut Pg, pool: &AsyncPool<Pg>) -> Result<String, Error> {
    let s: S = diesel::sql_query(
        "SELECT current_setting('transaction_isolation') || ' ' || \
         current_setting('transaction_read_only') || ' ' || current_setting('statement_timeout') AS s",
    )
    .get_result(conn)
    .await?;
    Ok(s.s)
}

#[db_txn(pool = pool, read_only)]
async fn write_read_only(conn: &mut Pg, pool: &AsyncPool<Pg>) -> Result<(), Error> {
    conn.batch_execute("INSERT INTO ops VALUES ('ro', 0, 1, 1)")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_isolation_read_only_and_timeout() {
    let pool = pg_pool("async_settings", 1).await;
    assert_eq!(settings(&pool).await.unwrap(), "serializable on 1500ms");
    match write_read_only(&pool).await {
        Err(Error::Query(diesel::result::Error::DatabaseError(kind, _))) => {
            assert_eq!(kind, diesel::result::DatabaseErrorKind::ReadOnlyTransaction)
        }
        other => panic!("{other:?}"),
    }
    // SET LOCAL: nothing left on the session.
    let mut conn = pool.get().await.unwrap();
    let s: S = diesel::sql_query("SELECT current_setting('statement_timeout') AS s")
        .get_result(&mut *conn)
        .await
        .unwrap();
    assert_eq!(s.s, "0");
}

#[db_txn(pool = pool, isolation = read_committed, timeout = "1500ms")]
async fn mysql_settings(
    conn: &mut AsyncMysqlConnection,
    pool: &AsyncPool<AsyncMysqlConnection>,
) -> Result<String, Error> {
    // The transaction's own level: InnoDB registers it at its first read.
    conn.batch_execute("SELECT COUNT(*) FROM t").await?;
    let s: S = diesel::sql_query(
        "SELECT CONCAT(@@in_transaction, ' ', trx_isolation_level, ' ', @@max_statement_time) \
         AS s FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()",
    )
    .get_result(conn)
    .await?;
    Ok(s.s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_isolation_and_timeout_reset_after_the_call() {
    let url = AsyncServer::create_database(MariaDb::shared(), "async_settings");
    let pool = AsyncPool::<AsyncMysqlConnection>::builder(url)
        .max_size(1)
        .build()
        .await
        .unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE t (a INT) ENGINE=InnoDB")
        .await
        .unwrap();
    assert_eq!(
        mysql_settings(&pool).await.unwrap(),
        "1 READ COMMITTED 1.500000"
    );
    let mut conn = pool.get().await.unwrap();
    let s: S = diesel::sql_query("SELECT CONCAT(@@max_statement_time, '') AS s")
        .get_result(&mut *conn)
        .await
        .unwrap();
    assert_eq!(s.s, "0.000000", "the session setting was reset");
    assert_eq!(pool.stats().opened, 1);
}

#[db_txn(pool = pool, retry = 0)]
async fn consume(conn: &mut Pg, pool: &AsyncPool<Pg>, label: String) -> Result<String, Error> {
    conn.batch_execute("SELECT 1").await?;
    Ok(label)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_zero_moves_its_argument() {
    let pool = pg_pool("async_retry0", 1).await;
    assert_eq!(consume(&pool, "moved".to_owned()).await.unwrap(), "moved");
}

#[db_txn(pool = pool)]
async fn add(conn: &mut Pg, pool: &AsyncPool<Pg>, op: &str, fail: bool) -> Result<(), Error> {
    conn.batch_execute(&format!("INSERT INTO ops VALUES ('{op}', 0, 1, 1)"))
        .await?;
    if fail {
        return Err(Error::Query(diesel::result::Error::RollbackTransaction));
    }
    Ok(())
}

#[db_txn(pool = pool, isolation = serializable)]
async fn add_serializable(conn: &mut Pg, pool: &AsyncPool<Pg>, op: &str) -> Result<(), Error> {
    conn.batch_execute(&format!("INSERT INTO ops VALUES ('{op}', 0, 1, 1)"))
        .await?;
    Ok(())
}

#[db_txn(pool = pool, requires_new)]
async fn add_on_its_own(conn: &mut Pg, pool: &AsyncPool<Pg>, op: &str) -> Result<(), Error> {
    conn.batch_execute(&format!("INSERT INTO ops VALUES ('{op}', 0, 1, 1)"))
        .await?;
    Ok(())
}

/// The outer call lends its connection: inner calls join its transaction
/// in SAVEPOINTs; a failed inner call rolls back its savepoint only; a call
/// made without lending is refused; `requires_new` gets its own; the outer
/// call's error rolls everything back.
#[db_txn(pool = pool)]
async fn outer(conn: &mut Pg, pool: &AsyncPool<Pg>, tag: &str, fail: bool) -> Result<(), Error> {
    db_txn::lend_async(conn, async || {
        add(pool, &format!("{tag}-a"), false).await?;
        assert!(add(pool, &format!("{tag}-b"), true).await.is_err());
        add(pool, &format!("{tag}-c"), false).await?;
        match add_serializable(pool, &format!("{tag}-d")).await {
            Err(Error::NestedMismatch { holder, .. }) => assert!(holder.ends_with("outer")),
            other => panic!("{other:?}"),
        }
        add_on_its_own(pool, &format!("{tag}-own")).await
    })
    .await?;
    // Without lending, a joined call would alias the body's `&mut`.
    match add(pool, &format!("{tag}-e"), false).await {
        Err(Error::ConnectionBorrowed { function, holder }) => {
            assert!(function.ends_with("add") && holder.ends_with("outer"));
        }
        other => panic!("{other:?}"),
    }
    let n = db_txn::with_connection_async::<Pg, _>(async |c| {
        diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM ops WHERE op_id LIKE '{tag}-%'"
        ))
        .get_result::<N>(c)
        .await
    });
    // The body holds the connection: not lent, so refused.
    assert!(matches!(n.await, Err(Error::ConnectionBorrowed { .. })));
    let n = db_txn::lend_async(conn, async || {
        db_txn::with_connection_async::<Pg, _>(async |c| {
            diesel::sql_query(format!(
                "SELECT COUNT(*) AS n FROM ops WHERE op_id LIKE '{tag}-%'"
            ))
            .get_result::<N>(c)
            .await
        })
        .await
    })
    .await?
    .map_err(Error::Query)?;
    // a, c and own (committed by its own transaction)
    assert_eq!(n.n, 3);
    if fail {
        return Err(Error::Query(diesel::result::Error::RollbackTransaction));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nesting_through_lend_async() {
    let pool = pg_pool("async_nesting", 2).await;
    outer(&pool, "ok", false).await.unwrap();
    let ops = |tag: &str| format!("SELECT COUNT(*) AS n FROM ops WHERE op_id LIKE '{tag}-%'");
    assert_eq!(count(&pool, &ops("ok")).await, 3);
    assert!(outer(&pool, "bad", true).await.is_err());
    assert_eq!(
        count(&pool, &ops("bad")).await,
        1,
        "only requires_new's own transaction survives the outer rollback"
    );
    let s = pool.stats();
    assert_eq!((s.connections, s.idle_connections), (2, 2), "{s:?}");
}

#[db_txn(pool = pool)]
async fn middle(conn: &mut Pg, pool: &AsyncPool<Pg>, tag: &str) -> Result<(), Error> {
    conn.batch_execute(&format!("INSERT INTO ops VALUES ('{tag}-middle', 0, 1, 1)"))
        .await?;
    // A joined call lends the connection on: its own calls join too.
    db_txn::lend_async(conn, async || {
        add(pool, &format!("{tag}-inner"), false).await?;
        assert!(add(pool, &format!("{tag}-inner-failed"), true)
            .await
            .is_err());
        Ok(())
    })
    .await
}

#[db_txn(pool = pool)]
async fn top(conn: &mut Pg, pool: &AsyncPool<Pg>, tag: &str) -> Result<(), Error> {
    db_txn::lend_async(conn, async || {
        middle(pool, tag).await?;
        add(pool, &format!("{tag}-after"), false).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_call_lends_on() {
    let pool = pg_pool("async_lend_on", 1).await;
    top(&pool, "deep").await.unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) AS n FROM ops WHERE op_id LIKE 'deep-%'"
        )
        .await,
        3,
        "middle, inner and after: one connection, one transaction"
    );
    assert_eq!(pool.stats().checkouts, 3, "schema, top, the count");
}

/// A connection held outside any pool (a test's): annotated calls run on
/// it through `lend_async`, in a transaction of their own on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lend_async_a_connection_of_your_own() {
    use diesel_async::AsyncConnection;
    let pool = pg_pool("async_lend_own", 1).await;
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/async_lend_own",
        Postgres::shared().port()
    );
    let mut conn = Pg::establish(&url).await.unwrap();
    conn.begin_test_transaction().await.unwrap();
    db_txn::lend_async(&mut conn, async || add(&pool, "lent", false).await)
        .await
        .unwrap();
    let n: N = diesel::sql_query("SELECT COUNT(*) AS n FROM ops WHERE op_id = 'lent'")
        .get_result(&mut conn)
        .await
        .unwrap();
    assert_eq!(n.n, 1, "visible inside the test transaction");
    assert_eq!(pool.stats().checkouts, 1, "the pool was not used");
    drop(conn);
    assert_eq!(
        count(&pool, "SELECT COUNT(*) AS n FROM ops WHERE op_id = 'lent'").await,
        0,
        "the test transaction never committed"
    );
}

/// A joined call's future taken out of the `lend_async` that lent the
/// connection, half-way through its body: the outer call rolls back
/// instead of committing, and polling the joined call again panics instead
/// of using a connection it no longer borrows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_call_polled_outside_its_lend_panics() {
    let pool = pg_pool("async_escape", 1).await;
    let task = tokio::spawn(async move {
        let stash = std::sync::Mutex::new(None);
        match escape(&pool, &stash).await {
            Err(Error::Transaction { step, source, .. }) => {
                assert_eq!(step, db_txn::Step::Commit);
                assert!(source.to_string().contains("rolled back"), "{source}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            count(&pool, "SELECT COUNT(*) AS n FROM ops WHERE op_id = 'outer'").await,
            0,
            "rolled back"
        );
        let mut escaped: Escaped = stash.lock().unwrap().take().expect("stashed");
        // Polled once more, outside the lend.
        std::future::poll_fn(|cx| {
            let _ = escaped.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
    });
    let err = task.await.expect_err("must panic");
    let message = err
        .into_panic()
        .downcast::<&str>()
        .map(|s| s.to_string())
        .unwrap_or_default();
    assert!(message.contains("lend_async"), "{message}");
}

type Escaped = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Error>> + Send>>;

#[db_txn(pool = pool)]
async fn wait_inside(
    conn: &mut Pg,
    pool: &AsyncPool<Pg>,
    reached: &AtomicBool,
) -> Result<(), Error> {
    conn.batch_execute("SELECT 1").await?;
    reached.store(true, Ordering::SeqCst);
    std::future::pending::<()>().await;
    Ok(())
}

#[allow(clippy::async_yields_async)] // the point: the joined call escapes unawaited
#[db_txn(pool = pool, retry = 0)]
async fn escape(
    conn: &mut Pg,
    pool: &AsyncPool<Pg>,
    stash: &std::sync::Mutex<Option<Escaped>>,
) -> Result<(), Error> {
    conn.batch_execute("INSERT INTO ops VALUES ('outer', 0, 1, 1)")
        .await?;
    let pool = pool.clone();
    let joined = db_txn::lend_async(conn, async move || {
        let reached: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let mut joined: Escaped = Box::pin(async move { wait_inside(&pool, reached).await });
        // Polled inside the lend until its body waits: it holds the connection.
        while !reached.load(Ordering::SeqCst) {
            std::future::poll_fn(|cx| {
                let _ = joined.as_mut().poll(cx);
                std::task::Poll::Ready(())
            })
            .await;
            tokio::task::yield_now().await;
        }
        joined
    })
    .await;
    *stash.lock().unwrap() = Some(joined);
    Ok(())
}
