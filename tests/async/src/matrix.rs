//! The fault matrix of `tests/fault/matrix.rs`, row for row, on the async
//! form: the same faults, the same ledger checks, the same counters.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use db_txn::{db_txn, AsyncPool, AsyncPoolBuilder, AsyncTxnConnection, PoolStats};
use diesel_async::SimpleAsyncConnection;

use crate::ledger::{transfer, Ledger, LedgerError};
use crate::AsyncServer;

/// A call that succeeds after a fault takes at most this long here.
const BOUND: Duration = Duration::from_secs(15);

fn stats<S: AsyncServer>(l: &Ledger<'_, S>) -> PoolStats {
    l.pool.stats()
}

/// The server drops a connection that idled past its limit: the checkout's
/// ping finds it dead and a fresh connection serves the call.
pub async fn idle_past_server_timeout<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "idle_timeout", async |url| {
        Ledger::<S>::pool(url, 1).await
    })
    .await;
    for _ in 0..3 {
        l.pool
            .get()
            .await
            .expect("conn")
            .batch_execute(&S::idle_limit_sql(1))
            .await
            .expect("set the limit");
        tokio::time::sleep(Duration::from_millis(2200)).await;
        l.transfer().await;
    }
    let s = stats(&l);
    assert_eq!(
        s.disconnects, 3,
        "each idle connection was found dead: {s:?}"
    );
    assert_eq!((s.retries, s.opened), (0, 4), "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
    l.assert_bounded(BOUND);
}

/// KILL / pg_terminate_backend between transactions, on a connection the
/// pool trusts without a ping: BEGIN finds it dead, the body runs again.
pub async fn kill_between_transactions<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "kill_between", async |url| {
        AsyncPool::builder(url)
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10))
            .ping_window(Duration::from_secs(60))
            .build()
            .await
            .expect("pool")
    })
    .await;
    l.transfer().await;
    server.kill_all(&l.database);
    l.transfer().await;
    let s = stats(&l);
    assert_eq!(s.retries, 1, "{s:?}");
    assert!(s.disconnects >= 1, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
    l.assert_bounded(BOUND);
}

/// The same with the default ping window: after a disconnect the pool pings
/// every older connection at its next checkout.
pub async fn kill_between_transactions_then_ping<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "kill_ping", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    server.kill_all(&l.database);
    tokio::time::sleep(Duration::from_millis(600)).await;
    l.transfer().await;
    let s = stats(&l);
    assert_eq!(s.retries, 0, "the ping caught it before BEGIN: {s:?}");
    assert!(s.pings >= 1, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// KILL in the middle of a transaction: the next statement fails, the whole
/// body runs again.
pub async fn kill_mid_transaction<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "kill_mid", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    let fired = AtomicBool::new(false);
    let database = l.database.clone();
    l.transfer_with(&|| {
        if !fired.swap(true, Ordering::SeqCst) {
            server.kill_all(&database);
        }
    })
    .await;
    let s = stats(&l);
    assert_eq!(s.retries, 1, "{s:?}");
    assert!(s.rollbacks >= 1, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
    l.assert_bounded(BOUND);
}

/// The body's own error: rolled back, not retried, returned as is.
pub async fn error_in_body<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "error_body", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    let dup = l.done[0].clone();
    let r = transfer(&l.pool, &dup, 0, 1, 5, &|| {}).await;
    assert!(matches!(r, Err(LedgerError::Db(_))), "{r:?}");
    let s = stats(&l);
    assert_eq!((s.retries, s.rollbacks), (0, 1), "{s:?}");
    assert_eq!(l.times_applied(&dup), 1);
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// A panic in the body after a write: rolled back, the panic reaches the
/// caller, the connection goes back to the pool healthy.
pub async fn panic_in_body<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "panic_body", async |url| {
        Ledger::<S>::pool(url, 1).await
    })
    .await;
    l.transfer().await;
    let opened = stats(&l).opened;
    let pool = l.pool.clone();
    // On a task of its own, as a panicking request handler would be.
    let caught = tokio::spawn(async move {
        transfer(&pool, "doomed", 0, 1, 5, &|| {
            panic!("mid-transaction panic")
        })
        .await
    })
    .await;
    let panic = caught.expect_err("the panic must reach the caller");
    assert!(panic.is_panic(), "{panic:?}");
    assert_eq!(l.times_applied("doomed"), 0, "rolled back");
    l.transfer().await;
    let s = stats(&l);
    assert_eq!(
        s.opened, opened,
        "the same connection served after the panic: {s:?}"
    );
    assert_eq!(s.closed, 0, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// A server restart between transactions: every pooled connection is dead.
pub async fn server_restart<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "restart", async |url| {
        Ledger::<S>::pool(url, 3).await
    })
    .await;
    // Three connections in the pool.
    tokio::join!(hold(&l.pool), hold(&l.pool), hold(&l.pool));
    l.transfer().await;
    server.restart();
    for _ in 0..6 {
        l.transfer().await;
    }
    let s = stats(&l);
    assert!(s.disconnects >= 1, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
    l.assert_bounded(BOUND);
}

async fn hold<C: AsyncTxnConnection>(pool: &AsyncPool<C>) {
    let _c = pool.get().await.expect("conn");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The server is down for two seconds; a call made meanwhile waits for it
/// (within the checkout timeout) and succeeds.
pub async fn server_down_then_back<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "down_up", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    server.stop();
    let back = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.start_again();
    };
    tokio::join!(back, l.transfer());
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak().await;
    l.assert_bounded(Duration::from_secs(10) + Duration::from_secs(2));
}

/// The server is down for most of a second while four calls wait for it.
/// They take turns at connecting: one try every 2 ms or so for the whole
/// pool (not one per call, and not slower and slower as each call's own
/// pause doubled before), and all four go through soon after it is back.
pub async fn waiting_calls_take_turns<S: AsyncServer>(server: &S) {
    const DOWN: Duration = Duration::from_millis(600);
    let mut l = Ledger::new(server, "turns", async |url| Ledger::<S>::pool(url, 4).await).await;
    l.transfer().await;
    server.stop();
    let failures_before = stats(&l).connect_failures;
    let started = Instant::now();
    let back = async {
        tokio::time::sleep(DOWN).await;
        tokio::task::block_in_place(|| server.start_again());
        Instant::now()
    };
    let ops: Vec<_> = (0..4).map(|_| l.next_op()).collect();
    let call = async |i: usize| {
        let (op, from, to) = &ops[i];
        let result = transfer(&l.pool, op, *from, *to, 7, &|| {}).await;
        (result, Instant::now())
    };
    let (back_at, calls) = tokio::join!(back, async {
        tokio::join!(call(0), call(1), call(2), call(3))
    });
    let outage = back_at - started;
    let calls = [calls.0, calls.1, calls.2, calls.3];
    for ((result, ended), (op, _, _)) in calls.iter().zip(&ops) {
        if let Err(e) = result {
            panic!("{op} reached the caller as an error: {e:?}");
        }
        let late = ended.saturating_duration_since(back_at);
        eprintln!("{op} went through {late:?} after the server was back");
        assert!(
            late < Duration::from_millis(500),
            "{op} went through {late:?} after the server was back"
        );
    }
    for (op, _, _) in &ops {
        l.acknowledge(op);
    }
    let failures = stats(&l).connect_failures - failures_before;
    db_txn_tests::pace::assert_paced(failures, DOWN, outage, 4, 1);
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// The server freezes (SIGSTOP) for two seconds while a transaction runs;
/// the call completes once it thaws.
pub async fn frozen_server<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "frozen", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    let started = Instant::now();
    let freeze = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        server.freeze();
        tokio::time::sleep(Duration::from_secs(2)).await;
        server.thaw();
    };
    tokio::join!(
        freeze,
        l.transfer_with(&|| std::thread::sleep(Duration::from_millis(400)))
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the call did wait for the thaw"
    );
    l.assert_consistent(0);
    l.assert_no_leak().await;
    l.assert_bounded(BOUND);
}

/// Bad input: a wrong port, a wrong password, a wrong database: a clear
/// error at once, never an endless retry.
pub async fn bad_urls<S: AsyncServer>(server: &S, wrong_password_url: String) {
    let closed = db_txn_tests::ports::free_port();
    let cases = [
        (server.url_via_port("nowhere", closed), "absent server"),
        (wrong_password_url, "wrong password"),
        (
            server.url_via_port("no_such_database", server.port()),
            "unknown database",
        ),
    ];
    for (url, what) in cases {
        let started = Instant::now();
        let err = AsyncPool::<S::Conn>::builder(url.clone())
            .checkout_timeout(Duration::from_secs(5))
            .build()
            .await
            .expect_err(what);
        let took = started.elapsed();
        assert!(
            matches!(err, db_txn::Error::Connect { .. }),
            "{what}: {err:?}"
        );
        assert!(took < Duration::from_secs(5), "{what}: took {took:?}");
        eprintln!("{what}: {err} ({took:?})");
    }
}

/// A ledger whose pool reaches the server through a fault-injecting proxy.
async fn via_proxy<'s, S: AsyncServer>(
    server: &'s S,
    name: &str,
    configure: impl FnOnce(AsyncPoolBuilder<S::Conn>) -> AsyncPoolBuilder<S::Conn>,
) -> (db_txn_tests::Proxy, Ledger<'s, S>) {
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    let proxy = db_txn_tests::Proxy::start(upstream).expect("proxy");
    let port = proxy.port();
    let l = Ledger::new(server, name, async |url| {
        let database = url
            .rsplit('/')
            .next()
            .and_then(|d| d.split('?').next())
            .expect("database in url")
            .to_owned();
        let builder = AsyncPool::builder(server.url_via_port(&database, port))
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10));
        configure(builder).build().await.expect("pool")
    })
    .await;
    (proxy, l)
}

/// The network cuts every connection (a proxy or load balancer restart).
pub async fn proxy_cut<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = via_proxy(server, "proxy_cut", |b| {
        b.ping_window(Duration::from_secs(60))
    })
    .await;
    l.transfer().await;
    proxy.cut_all();
    l.transfer().await;
    let fired = AtomicBool::new(false);
    l.transfer_with(&|| {
        if !fired.swap(true, Ordering::SeqCst) {
            proxy.cut_all();
        }
    })
    .await;
    let s = stats(&l);
    assert_eq!(s.retries, 2, "one retry per cut: {s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
    l.assert_bounded(BOUND);
}

/// A NAT forgets idle connections: `max_idle` below its timeout retires
/// them unpinged.
pub async fn proxy_blackhole_idle<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = via_proxy(server, "proxy_blackhole", |b| {
        b.max_idle(Duration::from_millis(800))
    })
    .await;
    l.transfer().await;
    proxy.blackhole_existing();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    l.transfer().await;
    let s = stats(&l);
    assert!(
        s.recycled >= 1,
        "the idle connection was retired unpinged: {s:?}"
    );
    l.assert_consistent(0);
    l.assert_bounded(Duration::from_secs(5));
    drop(proxy);
}

/// The link dies right after COMMIT reached the server: commit-unknown,
/// never a retry, the row there exactly once.
pub async fn cut_after_commit<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = via_proxy(server, "cut_commit", |b| b).await;
    l.transfer().await;
    proxy.cut_after_commit();
    let (op, r) = l.try_transfer(&|| {}).await;
    match r {
        Err(LedgerError::Txn(e @ db_txn::Error::CommitUnknown { .. })) => {
            assert!(e.is_commit_unknown());
            assert!(e.to_string().contains("may or may not"), "{e}");
        }
        other => panic!("expected CommitUnknown, got {other:?}"),
    }
    let s = stats(&l);
    assert_eq!((s.retries, s.commit_unknowns), (0, 1), "{s:?}");
    // Off by default: nothing was asked.
    assert_eq!(
        (s.lost_commits_committed, s.lost_commits_aborted),
        (0, 0),
        "{s:?}"
    );
    assert_eq!(l.times_applied(&op), 1, "committed exactly once");
    l.transfer().await;
    l.assert_consistent(1);
    l.assert_no_leak().await;
}

/// `timeout = "1s"`: the server cancels a longer statement, the
/// transaction rolls back, the connection serves the next call.
pub async fn statement_timeout<S: AsyncServer>(server: &S) {
    let l = Ledger::new(server, "stmt_timeout", async |url| {
        Ledger::<S>::pool(url, 1).await
    })
    .await;
    let started = Instant::now();
    let r = slow::<S::Conn>(&l.pool, &S::sleep_sql(5.0)).await;
    let took = started.elapsed();
    assert!(r.is_err(), "the 5 s statement must be cancelled");
    assert!(took < Duration::from_secs(4), "cancelled after {took:?}");
    let fast = slow::<S::Conn>(&l.pool, &S::sleep_sql(0.0)).await;
    assert!(fast.is_ok(), "{fast:?}");
    assert_eq!(l.pool.stats().opened, 1, "the same connection served both");
}

#[db_txn(pool = pool, timeout = "1s", retry = 0)]
async fn slow<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    sql: &str,
) -> Result<(), LedgerError> {
    conn.batch_execute(sql).await?;
    Ok(())
}

/// The server's idle limit is read at connect (MariaDB `wait_timeout`): a
/// connection idle close to it is retired without a ping.
pub async fn recycled_before_server_idle_limit<S: AsyncServer>(server: &S) {
    server.exec("SET GLOBAL wait_timeout = 3");
    let mut l = Ledger::new(server, "recycle", async |url| {
        Ledger::<S>::pool(url, 1).await
    })
    .await;
    l.transfer().await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    l.transfer().await;
    let s = stats(&l);
    assert!(s.recycled >= 1, "retired before the server's limit: {s:?}");
    assert_eq!((s.pings, s.disconnects, s.retries), (0, 0, 0), "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// Two transactions that lock the same rows in opposite orders: the server
/// picks a deadlock victim, and `retry_conflicts` runs its body again.
pub async fn deadlock_is_retried<S: AsyncServer>(server: &S) {
    let l = Ledger::new(server, "deadlock", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    let barrier = tokio::sync::Barrier::new(2);
    let (first, second) = (AtomicU32::new(0), AtomicU32::new(0));
    let (a, b) = tokio::join!(
        lock_both(&l.pool, 0, 1, &barrier, &first),
        lock_both(&l.pool, 1, 0, &barrier, &second)
    );
    assert!(a.is_ok(), "{a:?}");
    assert!(b.is_ok(), "{b:?}");
    let s = stats(&l);
    assert!(
        s.retries >= 1,
        "one of them was the deadlock victim and ran again: {s:?}"
    );
    assert_eq!(s.disconnects, 0, "{s:?}");
    assert_eq!(
        l.count("SELECT COUNT(*) FROM accounts WHERE balance = 1002"),
        2,
        "both transactions applied once"
    );
}

#[db_txn(pool = pool, retry_conflicts = 3)]
async fn lock_both<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    first: i64,
    second: i64,
    barrier: &tokio::sync::Barrier,
    attempt: &AtomicU32,
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "UPDATE accounts SET balance = balance + 1 WHERE id = {first}"
    ))
    .await?;
    if attempt.fetch_add(1, Ordering::SeqCst) == 0 {
        barrier.wait().await;
    }
    conn.batch_execute(&format!(
        "UPDATE accounts SET balance = balance + 1 WHERE id = {second}"
    ))
    .await?;
    Ok(())
}

/// A server that accepts TCP connections but never answers: building the
/// pool fails within the checkout timeout instead of hanging start-up.
pub async fn blackholed_server_at_start<S: AsyncServer>(
    server: &S,
    url_suffix: &str,
) -> db_txn::Error {
    let proxy =
        db_txn_tests::Proxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], server.port())))
            .expect("proxy");
    proxy.set_blackhole(true);
    let url = format!("{}{url_suffix}", server.url_via_port("test", proxy.port()));
    let started = Instant::now();
    let err = AsyncPool::<S::Conn>::builder(url)
        .checkout_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect_err("nothing answers");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}: {err}");
    eprintln!("black-holed server: {err} after {took:?}");
    err
}

/// A server frozen for good while a statement waits: with `stall_timeout`
/// the watchdog shuts the socket down, the call ends with an error within
/// the configured bounds, nothing is half-applied, and after the thaw the
/// pool serves again.
pub async fn frozen_server_with_stall_timeout<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "frozen_stall", async |url| {
        AsyncPool::builder(url)
            .max_size(2)
            .checkout_timeout(Duration::from_secs(2))
            .stall_timeout(Duration::from_secs(1))
            .build()
            .await
            .expect("pool")
    })
    .await;
    l.transfer().await;
    server.freeze();
    let started = Instant::now();
    let (op, r) = l.try_transfer(&|| {}).await;
    let took = started.elapsed();
    server.thaw();
    assert!(r.is_err(), "a frozen server cannot serve: {r:?}");
    assert!(
        took < Duration::from_secs(5),
        "bounded by stall + checkout timeouts: {took:?}"
    );
    eprintln!("frozen server: {r:?} after {took:?}");
    assert_eq!(l.times_applied(&op), 0, "nothing half-applied");
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// A `wait_timeout` set by the pool's `on_connect` hook is the limit the
/// pool works with.
pub async fn recycled_when_on_connect_sets_the_limit<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "recycle_hook", async |url| {
        AsyncPool::builder(url)
            .max_size(1)
            .on_connect(|c: &mut S::Conn| {
                Box::pin(async move { c.batch_execute(&S::idle_limit_sql(3)).await })
            })
            .build()
            .await
            .expect("pool")
    })
    .await;
    l.transfer().await;
    tokio::time::sleep(Duration::from_millis(2300)).await;
    l.transfer().await;
    let s = stats(&l);
    assert!(s.recycled >= 1, "{s:?}");
    assert_eq!((s.pings, s.disconnects, s.retries), (0, 0, 0), "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// The link dies right after the COMMIT of a read-only transaction: the
/// caller gets its result, not an error.
pub async fn cut_after_read_only_commit<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = via_proxy(server, "cut_ro_commit", |b| b).await;
    l.transfer().await;
    proxy.cut_after_commit();
    let r = read_ledger::<S::Conn>(&l.pool).await;
    assert!(r.is_ok(), "{r:?}");
    assert!(!proxy.commit_cut_pending(), "the COMMIT was cut");
    let s = stats(&l);
    assert_eq!((s.commit_unknowns, s.retries), (0, 0), "{s:?}");
    assert!(s.disconnects >= 1, "{s:?}");
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

#[db_txn(pool = pool, read_only)]
async fn read_ledger<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
) -> Result<(), LedgerError> {
    conn.batch_execute("SELECT COUNT(*) FROM ops").await?;
    Ok(())
}
