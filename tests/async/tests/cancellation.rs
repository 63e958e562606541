//! Cancellation: a call's future dropped at each await point, during a
//! COMMIT to a frozen server, while its lost COMMIT is being resolved, with
//! its runtime shut down; and a pool whose connections are all held.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use db_txn::{db_txn, AsyncPool, AsyncTxnConnection};
use db_txn_async_tests::cancel::{assert_settled, sweep};
use db_txn_async_tests::ledger::{transfer, Ledger, LedgerError};
use db_txn_async_tests::resolved::{nowhere, resolutions, resolving_via_proxy, upstream};
use db_txn_async_tests::server::eventually;
use db_txn_async_tests::AsyncServer;
use db_txn_tests::{MariaDb, Postgres};

async fn drop_at_each_await_point<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "cancel_sweep", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    let seen = sweep(&mut l).await;
    eprintln!("{}: {seen:?}", S::NAME);
    // Which poll lands where varies with timing; the first one sends BEGIN.
    // (The other two ways have tests of their own below.)
    assert!(seen.closed_mid_statement >= 1, "{seen:?}");
    // The pool still serves.
    l.transfer().await;
    l.assert_consistent(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drop_at_each_await_point() {
    db_txn_async_tests::logs();
    drop_at_each_await_point(Postgres::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_drop_at_each_await_point() {
    db_txn_async_tests::logs();
    drop_at_each_await_point(MariaDb::shared()).await;
}

/// Dropped while its body awaits something else (the transaction idle):
/// rolled back in a spawned task, and the connection, clean, serves the
/// next call (no reconnect).
async fn drop_while_idle_in_transaction<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "cancel_idle", async |url| {
        Ledger::<S>::pool(url, 1).await
    })
    .await;
    l.transfer().await;
    let before = l.pool.stats();
    let started = tokio::sync::Notify::new();
    let call = write_then_wait(&l.pool, "idle", None, &started);
    tokio::select! {
        _ = call => panic!("the call waits 30 s"),
        _ = started.notified() => {}
    }
    assert_settled(&l, "after the drop").await;
    let after = l.pool.stats();
    assert_eq!(after.rollbacks - before.rollbacks, 1, "{after:?}");
    assert_eq!(
        after.closed, before.closed,
        "returned, not closed: {after:?}"
    );
    assert_eq!(l.times_applied("idle"), 0, "rolled back");
    l.transfer().await;
    assert_eq!(
        l.pool.stats().opened,
        before.opened,
        "the same connection served"
    );
    l.assert_consistent(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drop_while_idle_in_transaction() {
    db_txn_async_tests::logs();
    drop_while_idle_in_transaction(Postgres::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_drop_while_idle_in_transaction() {
    db_txn_async_tests::logs();
    drop_while_idle_in_transaction(MariaDb::shared()).await;
}

/// Dropped while a long statement runs: the connection is closed (never
/// returned), the statement cancelled on the server at once (not left to
/// run its 10 s holding locks), nothing committed.
async fn drop_mid_statement<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "cancel_stmt", async |url| {
        Ledger::<S>::pool(url, 1).await
    })
    .await;
    l.transfer().await;
    let before = l.pool.stats();
    let started = tokio::sync::Notify::new();
    let sleep = S::sleep_sql(10.0);
    let call = write_then_wait(&l.pool, "stmt", Some(&sleep), &started);
    tokio::select! {
        _ = call => panic!("the call waits 10 s"),
        _ = async {
            started.notified().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        } => {}
    }
    let dropped = Instant::now();
    let gone = eventually(Duration::from_secs(3), || {
        l.server.connection_count(&l.database) == 0
    })
    .await;
    assert!(
        gone,
        "the session outlived the drop by 3 s: its statement was not cancelled"
    );
    eprintln!(
        "{}: session gone {:?} after the drop",
        S::NAME,
        dropped.elapsed()
    );
    let after = l.pool.stats();
    assert_eq!(after.closed - before.closed, 1, "{after:?}");
    assert_eq!(after.connections, 0, "{after:?}");
    assert_eq!(l.times_applied("stmt"), 0, "nothing committed");
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drop_mid_statement() {
    db_txn_async_tests::logs();
    drop_mid_statement(Postgres::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_drop_mid_statement() {
    db_txn_async_tests::logs();
    drop_mid_statement(MariaDb::shared()).await;
}

/// A transfer whose body freezes the server before it returns, so that
/// its COMMIT waits.
#[db_txn(pool = pool)]
async fn transfer_then_freeze<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    op: &str,
    freeze: &(dyn Fn() + Sync),
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 7); \
         UPDATE accounts SET balance = balance - 7 WHERE id = 0; \
         UPDATE accounts SET balance = balance + 7 WHERE id = 1"
    ))
    .await?;
    freeze();
    Ok(())
}

/// Dropped while COMMIT waits on a frozen server: counted as commit-unknown,
/// the connection closed (never returned); after the thaw, the operation is
/// there once or not at all, no transaction is left open, the pool serves.
async fn drop_during_commit<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "cancel_commit", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    let frozen = AtomicBool::new(false);
    let freeze = || {
        if !frozen.swap(true, Ordering::SeqCst) {
            server.freeze();
        }
    };
    let before = l.pool.stats();
    let call = transfer_then_freeze(&l.pool, "in-doubt", &freeze);
    let r = tokio::time::timeout(Duration::from_millis(500), call).await;
    server.thaw();
    assert!(
        r.is_err(),
        "the COMMIT cannot finish on a frozen server: {r:?}"
    );
    let after = l.pool.stats();
    assert_eq!(
        after.commit_unknowns - before.commit_unknowns,
        1,
        "{after:?}"
    );
    assert_eq!(
        after.closed - before.closed,
        1,
        "closed, not returned: {after:?}"
    );
    assert_settled(&l, "after the thaw").await;
    let applied = l.times_applied("in-doubt");
    eprintln!("{}: the in-doubt COMMIT applied {applied} time(s)", S::NAME);
    assert!(applied <= 1);
    if applied == 1 {
        l.acknowledge("in-doubt");
    }
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drop_during_commit() {
    db_txn_async_tests::logs();
    drop_during_commit(&Postgres::start().expect("server")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_drop_during_commit() {
    db_txn_async_tests::logs();
    drop_during_commit(&MariaDb::start().expect("server")).await;
}

/// Dropped while its lost COMMIT is being resolved (`resolve_commit`): the
/// resolution stops (no more connections are tried), the connection being
/// opened to ask is closed, and the outcome, which nobody will learn, counts
/// as commit-unknown. First the server cannot be reached (new connections go
/// nowhere), then it is frozen while the resolver connects to it, and the
/// call is dropped; after the thaw nothing is left open, the COMMIT (cut
/// after it reached the server) is there once, and the pool serves.
async fn drop_while_resolving<S: AsyncServer>(server: &S) {
    let resolution_timeout = Duration::from_secs(10);
    let (proxy, mut l) = resolving_via_proxy(server, "cancel_resolving", resolution_timeout).await;
    l.transfer().await;
    let before = l.pool.stats();
    proxy.cut_after_commit();
    proxy.retarget(nowhere());
    let accepted_before = proxy.stats().accepted;
    let frozen = AtomicBool::new(false);
    let accepted_at_freeze = std::sync::atomic::AtomicU64::new(0);
    let call = transfer(&l.pool, "in-doubt", 0, 1, 7, &|| {});
    let drop_it = async {
        let waited = Instant::now();
        while proxy.commit_fault_pending() {
            assert!(waited.elapsed() < Duration::from_secs(5), "no COMMIT");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The resolver tries to connect, and cannot.
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Now it reaches a server that does not answer.
        accepted_at_freeze.store(proxy.stats().accepted, Ordering::SeqCst);
        server.freeze();
        frozen.store(true, Ordering::SeqCst);
        proxy.retarget(upstream(server));
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    tokio::select! {
        r = call => {
            if frozen.load(Ordering::SeqCst) {
                server.thaw();
            }
            panic!("resolved without a server to ask: {r:?}");
        }
        _ = drop_it => {}
    }
    // Dropped: the resolution has stopped.
    let accepted = proxy.stats().accepted;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let accepted_later = proxy.stats().accepted;
    server.thaw();
    let at_freeze = accepted_at_freeze.load(Ordering::SeqCst);
    eprintln!(
        "{}: connections tried {} while unreachable, {} to the frozen server",
        S::NAME,
        at_freeze - accepted_before,
        accepted - at_freeze
    );
    assert!(
        at_freeze > accepted_before + 1,
        "the resolver was trying connections: {accepted_before} -> {at_freeze}"
    );
    assert!(
        accepted > at_freeze,
        "the resolver was connecting to the frozen server when dropped"
    );
    assert_eq!(accepted_later, accepted, "it went on after the drop");
    let after = l.pool.stats();
    let (committed, aborted, unknown, retries) = resolutions(&after);
    let was = resolutions(&before);
    assert_eq!(
        (
            committed - was.0,
            aborted - was.1,
            unknown - was.2,
            retries - was.3
        ),
        (0, 0, 1, 0),
        "{after:?}"
    );
    assert_settled(&l, "after the thaw").await;
    assert_eq!(
        proxy.live_connections(),
        usize::try_from(l.pool.stats().connections).expect("count"),
        "the connection opened to ask was closed"
    );
    assert_eq!(l.times_applied("in-doubt"), 1, "it had committed");
    l.acknowledge("in-doubt");
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_drop_while_resolving() {
    db_txn_async_tests::logs();
    drop_while_resolving(&Postgres::start().expect("server")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_drop_while_resolving() {
    db_txn_async_tests::logs();
    drop_while_resolving(&MariaDb::start().expect("server")).await;
}

/// A body that writes, then either waits (idle in its transaction) or runs
/// a long statement.
#[db_txn(pool = pool)]
async fn write_then_wait<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    op: &str,
    long_statement: Option<&str>,
    started: &tokio::sync::Notify,
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 7)"
    ))
    .await?;
    started.notify_one();
    match long_statement {
        Some(sql) => conn.batch_execute(sql).await?,
        None => tokio::time::sleep(Duration::from_secs(30)).await,
    }
    Ok(())
}

/// The runtime shuts down while a call is in its transaction: no panic, the
/// server sees the session end (it rolls back), nothing committed.
async fn runtime_shut_down<S: AsyncServer>(server: &'static S, long_statement: bool) {
    let name = if long_statement {
        "shutdown_stmt"
    } else {
        "shutdown_idle"
    };
    // The ledger lives on the test's runtime; the call on a runtime of its own.
    let l = Ledger::new(server, name, async |url| Ledger::<S>::pool(url, 1).await).await;
    let url = l.url.clone();
    let sleep = S::sleep_sql(10.0);
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let pool = runtime.block_on(Ledger::<S>::pool(url, 1));
        let started = Arc::new(tokio::sync::Notify::new());
        let call = {
            let (pool, started) = (pool.clone(), started.clone());
            async move {
                let sql = long_statement.then_some(sleep.as_str());
                let _ = write_then_wait(&pool, "shutdown", sql, &started).await;
            }
        };
        runtime.spawn(call);
        runtime.block_on(async {
            started.notified().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        // Every task, the call's included, is dropped here.
        runtime.shutdown_timeout(Duration::from_secs(5));
        // The pool outlives its runtime, then goes.
        drop(pool);
    });
    let joined = thread.join();
    assert!(joined.is_ok(), "a panic while the runtime shut down");
    // Well before the 10 s statement would have ended by itself: it was
    // cancelled, from a thread of its own.
    let started = Instant::now();
    let gone = eventually(Duration::from_secs(3), || {
        server.connection_count(&l.database) == i64::from(l.pool.stats().connections)
    })
    .await;
    assert!(
        gone,
        "the call's server session outlived its runtime by 3 s"
    );
    eprintln!(
        "{}: session gone {:?} after the shutdown",
        S::NAME,
        started.elapsed()
    );
    assert_eq!(l.times_applied("shutdown"), 0, "nothing committed");
    assert_settled(&l, "after the shutdown").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runtime_shut_down_idle_in_transaction() {
    runtime_shut_down(Postgres::shared(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runtime_shut_down_mid_statement() {
    runtime_shut_down(Postgres::shared(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_runtime_shut_down_idle_in_transaction() {
    runtime_shut_down(MariaDb::shared(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_runtime_shut_down_mid_statement() {
    runtime_shut_down(MariaDb::shared(), true).await;
}

#[db_txn(pool = pool)]
async fn hold<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    release: &tokio::sync::Barrier,
) -> Result<(), db_txn::Error> {
    conn.batch_execute("SELECT 1").await?;
    release.wait().await;
    Ok(())
}

/// Every connection held: the next call fails within the checkout timeout
/// with a clear error, and succeeds once one is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_exhaustion() {
    db_txn_async_tests::logs();
    let server = Postgres::shared();
    let url = AsyncServer::create_database(server, "async_exhaustion");
    let pool = AsyncPool::<diesel_async::AsyncPgConnection>::builder(url)
        .max_size(2)
        .checkout_timeout(Duration::from_millis(300))
        .build()
        .await
        .expect("pool");
    let release = tokio::sync::Barrier::new(3);
    let third = async {
        // Both connections are held by now.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let r = hold(&pool, &tokio::sync::Barrier::new(1)).await;
        let took = started.elapsed();
        release.wait().await;
        (r, took)
    };
    let (a, b, (c, took)) = tokio::join!(hold(&pool, &release), hold(&pool, &release), third);
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    match c {
        Err(e @ db_txn::Error::Checkout { .. }) => {
            assert!(e.to_string().contains("the pool is exhausted"), "{e}");
        }
        other => panic!("expected a checkout error, got {other:?}"),
    }
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "bounded by the checkout timeout: {took:?}"
    );
    assert!(hold(&pool, &tokio::sync::Barrier::new(1)).await.is_ok());
    let s = pool.stats();
    assert_eq!((s.connections, s.idle_connections), (2, 2), "{s:?}");
}
