//! The silent-fault rows of `tests/fault/silent.rs`, row for row, on the
//! async form: faults that do not announce themselves, with a pool built
//! from a URL and nothing else (`AsyncPool::new`, the defaults). Every call
//! must return, a success or a clear error, within a bound stated in terms
//! of the pool's settings (the same as the sync pool's); the proxy rows run
//! the proxy in a process of its own, so the server sees its address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use db_txn::{db_txn, AsyncPool, AsyncTxnConnection, PoolStats};
use db_txn_tests::ProxyProcess;

use crate::ledger::{Ledger, LedgerError};
use crate::AsyncServer;

/// The defaults the bounds below are stated in (`AsyncPoolBuilder`'s, the
/// same as `PoolBuilder`'s).
const CHECKOUT: Duration = Duration::from_secs(5);
const CHECK_AFTER: Duration = Duration::from_secs(2);
const PING_CHECK_AFTER: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The watchdog's tick and the grace after an "idle" answer, and a margin
/// for a loaded machine.
const SLACK: Duration = Duration::from_millis(2500);

fn proxy_to<S: AsyncServer>(server: &S) -> ProxyProcess {
    ProxyProcess::start(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The database a kit URL names (without its parameters).
fn database_of(url: &str) -> String {
    url.rsplit('/')
        .next()
        .and_then(|d| d.split('?').next())
        .expect("database in url")
        .to_owned()
}

/// A ledger whose pool is built from a URL through `proxy` and nothing else.
async fn defaults_via<'s, S: AsyncServer>(
    server: &'s S,
    name: &str,
    proxy: &ProxyProcess,
) -> Ledger<'s, S> {
    let port = proxy.port();
    Ledger::new(server, name, async |url| {
        AsyncPool::new(server.url_via_port(&database_of(&url), port))
            .await
            .expect("pool")
    })
    .await
}

fn stats<S: AsyncServer>(l: &Ledger<'_, S>) -> PoolStats {
    l.pool.stats()
}

/// A NAT forgets an idle flow: the next call's checkout ping gets no
/// answer; the watchdog learns from the server that the session is idle,
/// shuts the dead link down, and the call runs on a fresh connection.
pub async fn blackholed_idle_link<S: AsyncServer>(server: &S) {
    let proxy = proxy_to(server);
    let mut l = defaults_via(server, "bh_idle", &proxy).await;
    l.transfer().await;
    assert!(proxy.blackhole_existing() >= 1);
    // Idle past the ping window: the next checkout pings.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    l.transfer().await;
    let took = started.elapsed();
    eprintln!("{}: black-holed idle link, call took {took:?}", S::NAME);
    let bound = PING_CHECK_AFTER + PROBE_TIMEOUT + SLACK;
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    let s = stats(&l);
    assert!(s.stalls_cut >= 1, "the dead link was shut down: {s:?}");
    assert_eq!(s.commit_unknowns, 0, "{s:?}");
    l.assert_consistent(0);
    proxy.lift_blackhole();
    l.assert_no_leak().await;
}

/// The link goes silent between two statements of a transaction: the
/// watchdog finds the session idle, shuts the link down, and the body runs
/// again on a fresh connection; no error reaches the caller.
pub async fn blackholed_mid_statement<S: AsyncServer>(server: &S) {
    let proxy = proxy_to(server);
    let mut l = defaults_via(server, "bh_mid", &proxy).await;
    l.transfer().await;
    let fired = AtomicBool::new(false);
    let started = Instant::now();
    l.transfer_with(&|| {
        if !fired.swap(true, Ordering::SeqCst) {
            proxy.blackhole_existing();
        }
    })
    .await;
    let took = started.elapsed();
    eprintln!(
        "{}: link black-holed mid-statement, call took {took:?}",
        S::NAME
    );
    let bound = CHECK_AFTER + PROBE_TIMEOUT + SLACK;
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    let s = stats(&l);
    assert!(s.stalls_cut >= 1 && s.retries >= 1, "{s:?}");
    l.assert_consistent(0);
    proxy.lift_blackhole();
    l.assert_no_leak().await;
}

/// The link goes silent mid-statement on the first attempt and again on
/// the retry's fresh connection. The watchdog ends the first session (over
/// a connection of its own) while the retry connects: the retry's socket
/// must still be told apart from the watchdog's and watched, so the second
/// silence is cut too and the call ends, with `Disconnected` once the
/// retries run out, within two checks instead of hanging.
pub async fn blackholed_again_on_the_retry<S: AsyncServer>(server: &S) {
    let proxy = proxy_to(server);
    let mut l = defaults_via(server, "bh_twice", &proxy).await;
    l.transfer().await;
    let attempts = AtomicU32::new(0);
    let bound = 2 * (CHECK_AFTER + PROBE_TIMEOUT) + SLACK;
    let started = Instant::now();
    let mid = || {
        if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
            proxy.blackhole_existing();
        }
    };
    let call = l.try_transfer(&mid);
    let (op, r) = tokio::time::timeout(bound * 2, call)
        .await
        .unwrap_or_else(|_| panic!("the retry's silent link was never cut: unwatched"));
    let took = started.elapsed();
    eprintln!("{}: black-holed twice: {r:?} after {took:?}", S::NAME);
    assert!(
        matches!(
            r,
            Err(LedgerError::Txn(db_txn::Error::Disconnected {
                attempts: 2,
                ..
            }))
        ),
        "{r:?}"
    );
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    let s = stats(&l);
    assert!(s.stalls_cut >= 2, "both silent links were cut: {s:?}");
    proxy.lift_blackhole();
    assert_eq!(l.times_applied(&op), 0, "nothing half-applied");
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// The server freezes while a statement waits, reached through a proxy in
/// another process: the probe gets no answer, the link is shut down, the
/// retry's checkout cannot connect either, and the caller gets a
/// `Checkout` error within check + probe + checkout timeouts.
pub async fn frozen_behind_proxy<S: AsyncServer>(server: &S) {
    let proxy = proxy_to(server);
    let l = defaults_via(server, "frozen_proxy", &proxy).await;
    frozen_mid_statement_on(server, l).await;
    drop(proxy);
}

/// The same with a direct connection.
pub async fn frozen_mid_statement<S: AsyncServer>(server: &S) {
    let l = Ledger::new(server, "frozen_direct", async |url| {
        AsyncPool::new(url).await.expect("pool")
    })
    .await;
    frozen_mid_statement_on(server, l).await;
}

async fn frozen_mid_statement_on<S: AsyncServer>(server: &S, mut l: Ledger<'_, S>) {
    l.transfer().await;
    let frozen = AtomicBool::new(false);
    let started = Instant::now();
    let (op, r) = l
        .try_transfer(&|| {
            if !frozen.swap(true, Ordering::SeqCst) {
                server.freeze();
            }
        })
        .await;
    let took = started.elapsed();
    server.thaw();
    eprintln!("{}: frozen server: {r:?} after {took:?}", S::NAME);
    match &r {
        Err(LedgerError::Txn(e @ db_txn::Error::Checkout { .. })) => {
            let text = e.to_string();
            assert!(!text.contains("exhausted"), "not the pool's fault: {text}");
        }
        other => panic!("expected a checkout error after the cut, got {other:?}"),
    }
    let bound = CHECK_AFTER + PROBE_TIMEOUT + CHECKOUT + SLACK;
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    assert!(stats(&l).stalls_cut >= 1, "{:?}", stats(&l));
    assert_eq!(l.times_applied(&op), 0, "nothing half-applied");
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// A server that accepts TCP connections and never answers, for a pool
/// built lazily with the defaults: every checkout ends within the checkout
/// timeout with an error that names the server and does not blame the
/// pool's size.
pub async fn never_answering_server<S: AsyncServer>(server: &S) {
    let proxy = proxy_to(server);
    proxy.blackhole_all();
    let url = server.url_via_port("test", proxy.port());
    let pool = AsyncPool::<S::Conn>::builder(url).build_lazy();
    for _ in 0..2 {
        let started = Instant::now();
        let err = pool.get().await.map(drop).expect_err("nothing answers");
        let took = started.elapsed();
        eprintln!("{}: never-answering server: {err} after {took:?}", S::NAME);
        let db_txn::Error::Checkout { state, .. } = &err else {
            panic!("expected a checkout error, got {err:?}");
        };
        assert!(!state.exhausted(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&proxy.port().to_string()) && !text.contains("exhausted"),
            "{text}"
        );
        assert!(took < CHECKOUT + SLACK, "took {took:?}");
    }
}

/// A legitimately long statement (20 s) runs to its end with the defaults,
/// through a proxy in another process: the watchdog asks the server about
/// it, finds it running, and never cuts it.
pub async fn long_statement_is_not_cut<S: AsyncServer>(server: &S) {
    let proxy = proxy_to(server);
    let l = defaults_via(server, "long_stmt", &proxy).await;
    let started = Instant::now();
    long_statement(&l.pool, &S::sleep_sql(20.0))
        .await
        .expect("a long statement completes");
    let took = started.elapsed();
    eprintln!("{}: long statement took {took:?}", S::NAME);
    assert!(took >= Duration::from_secs(20), "{took:?}");
    let s = stats(&l);
    assert_eq!((s.stalls_cut, s.retries, s.disconnects), (0, 0, 0), "{s:?}");
    l.assert_no_leak().await;
}

#[db_txn(pool = pool)]
async fn long_statement<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    sql: &str,
) -> Result<(), db_txn::Error> {
    conn.batch_execute(sql).await?;
    Ok(())
}

/// The server closes the session after the body's last statement and
/// before COMMIT is sent: the closed socket is seen before COMMIT goes out,
/// so this is a loss before COMMIT and the body runs again, not an unknown
/// commit outcome.
pub async fn killed_just_before_commit<S: AsyncServer>(server: &S) {
    let mut l = Ledger::new(server, "kill_pre_commit", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    let fired = AtomicBool::new(false);
    let database = l.database.clone();
    let op = "pre-commit-1";
    let r = insert_then(&l.pool, op, &|| {
        if !fired.swap(true, Ordering::SeqCst) {
            server.kill_all(&database);
            true
        } else {
            false
        }
    })
    .await;
    assert!(r.is_ok(), "{r:?}");
    let s = stats(&l);
    assert_eq!((s.commit_unknowns, s.retries), (0, 1), "{s:?}");
    assert_eq!(l.times_applied(op), 1);
    l.acknowledge(op);
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// Inserts a zero-amount op, then runs `after`, then returns (COMMIT).
/// When `after` says it killed the session, the body waits 200 ms: the FIN
/// reaches the client side at once on loopback.
#[db_txn(pool = pool)]
async fn insert_then<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    op: &str,
    after: &(dyn Fn() -> bool + Sync),
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 0)"
    ))
    .await?;
    if after() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// The connection is lost on every attempt: when the retries run out, the
/// caller gets `Error::Disconnected` with the driver's error as its source.
pub async fn retries_run_out<S: AsyncServer>(server: &S) {
    let l = Ledger::new(server, "retries_out", async |url| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    let database = l.database.clone();
    let attempts = AtomicU32::new(0);
    let r = insert_then(&l.pool, "never", &|| {
        attempts.fetch_add(1, Ordering::SeqCst);
        server.kill_all(&database);
        true
    })
    .await;
    let Err(LedgerError::Txn(e @ db_txn::Error::Disconnected { .. })) = &r else {
        panic!("expected Disconnected, got {r:?}");
    };
    let db_txn::Error::Disconnected { attempts: n, .. } = e else {
        unreachable!()
    };
    assert_eq!((*n, attempts.load(Ordering::SeqCst)), (2, 2), "{e}");
    let source = std::error::Error::source(e).map(ToString::to_string);
    assert!(
        source.as_deref().is_some_and(|s| !s.is_empty()),
        "the driver's error is the source: {e:?}"
    );
    assert!(
        !e.to_string().contains(source.as_deref().unwrap_or("")),
        "the cause is not printed twice: {e}"
    );
    assert_eq!(l.times_applied("never"), 0);
    l.assert_no_leak().await;
}
