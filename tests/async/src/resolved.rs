//! The `resolve_commit` rows of `tests/fault/matrix.rs`, row for row, on
//! the async form: the same COMMIT faults (from the fault proxy in a
//! process of its own), the same ledger checks, the same counters.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use db_txn::{AsyncPool, PoolStats};
use db_txn_tests::ProxyProcess;

use crate::ledger::{Ledger, LedgerError};
use crate::server::eventually;
use crate::AsyncServer;

/// A call that succeeds after a fault takes at most this long here; also
/// the resolution timeout of the rows that resolve.
pub const BOUND: Duration = Duration::from_secs(15);

/// A ledger whose pool resolves lost COMMITs (`resolve_commit(true)`) and
/// reaches the server through the fault proxy in a process of its own.
pub async fn resolving_via_proxy<'s, S: AsyncServer>(
    server: &'s S,
    name: &str,
    resolution_timeout: Duration,
) -> (ProxyProcess, Ledger<'s, S>) {
    let proxy = ProxyProcess::start(upstream(server)).expect("proxy process");
    let port = proxy.port();
    let l = Ledger::new(server, name, async |url| {
        AsyncPool::builder(server.url_via_port(&database_of(&url), port))
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10))
            .resolve_commit(true)
            .commit_resolution_timeout(resolution_timeout)
            .build()
            .await
            .expect("pool")
    })
    .await;
    (proxy, l)
}

/// The database named by a kit URL.
pub fn database_of(url: &str) -> String {
    url.rsplit('/')
        .next()
        .and_then(|d| d.split('?').next())
        .expect("database in url")
        .to_owned()
}

/// The server's own address.
pub fn upstream<S: AsyncServer>(server: &S) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

/// An address where nothing listens.
pub fn nowhere() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], db_txn_tests::ports::free_port()))
}

/// Counts the runs of a transfer's body.
pub fn counting(runs: &AtomicU32) -> impl Fn() + Sync + '_ {
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
    }
}

/// `(lost_commits_committed, lost_commits_aborted, commit_unknowns, retries)`.
pub fn resolutions(s: &PoolStats) -> (u64, u64, u64, u64) {
    (
        s.lost_commits_committed,
        s.lost_commits_aborted,
        s.commit_unknowns,
        s.retries,
    )
}

/// With `resolve_commit`, the link dies right after COMMIT reached the
/// server: the server says the transaction committed, so the caller gets
/// the body's value; the body ran once and the row is there once.
pub async fn cut_after_commit_resolved<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = resolving_via_proxy(server, "cut_commit_resolved", BOUND).await;
    l.transfer().await;
    proxy.cut_after_commit();
    let runs = AtomicU32::new(0);
    let started = Instant::now();
    l.transfer_with(&counting(&runs)).await;
    eprintln!("resolved as committed in {:?}", started.elapsed());
    assert!(!proxy.commit_fault_pending(), "the COMMIT was cut");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (1, 0, 0, 0), "{s:?}");
    let op = l.done.last().expect("acknowledged").clone();
    assert_eq!(l.times_applied(&op), 1, "committed exactly once");
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// With `resolve_commit`, COMMIT never reaches the server: the server says
/// the transaction did not commit, so the body runs again; the row is
/// there once.
pub async fn dropped_commit_resolved<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = resolving_via_proxy(server, "drop_commit_resolved", BOUND).await;
    l.transfer().await;
    proxy.drop_commit();
    let runs = AtomicU32::new(0);
    l.transfer_with(&counting(&runs)).await;
    assert!(!proxy.commit_fault_pending(), "the COMMIT was dropped");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the body ran again");
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (0, 1, 0, 1), "{s:?}");
    let op = l.done.last().expect("acknowledged").clone();
    assert_eq!(l.times_applied(&op), 1, "applied exactly once");
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// With `resolve_commit`, the server is killed (SIGKILL) while a call is in
/// its COMMIT and restarted, once after COMMIT reached it and once when it
/// never did; the outcome is asked of the restarted server: committed, then
/// not committed (the body runs again); the ledger is exact.
pub async fn crash_during_commit_resolved<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = resolving_via_proxy(server, "crash_commit_resolved", BOUND).await;
    l.transfer().await;
    let nowhere = nowhere();
    let mut runs_per_call = Vec::new();
    for (arm, what) in [
        (
            &(|p: &ProxyProcess| p.cut_after_commit()) as &dyn Fn(_),
            "cut after",
        ),
        (&|p: &ProxyProcess| p.drop_commit(), "dropped"),
    ] {
        arm(&proxy);
        proxy.retarget(nowhere);
        let runs = AtomicU32::new(0);
        // The crash and the restart block for seconds: on a thread of their
        // own, while this one drives the call.
        tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let waited = Instant::now();
                    while proxy.commit_fault_pending() {
                        assert!(waited.elapsed() < BOUND, "the COMMIT never came");
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    server.crash();
                    server.start_again();
                    proxy.retarget(upstream(server));
                });
                tokio::runtime::Handle::current().block_on(l.transfer_with(&counting(&runs)));
            })
        });
        eprintln!("COMMIT {what}, server crashed: the body ran {runs:?} time(s)");
        runs_per_call.push(runs.load(Ordering::SeqCst));
    }
    assert_eq!(runs_per_call, [1, 2], "committed once, then run again");
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (1, 1, 0, 1), "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
    l.assert_bounded(BOUND);
}

/// With `resolve_commit`, the server cannot be reached after the link died
/// right after COMMIT: `CommitUnknown` once the resolution timeout (2 s)
/// has run out, and not much later.
pub async fn unreachable_after_commit_is_unknown<S: AsyncServer>(server: &S) {
    let timeout = Duration::from_secs(2);
    let (proxy, mut l) = resolving_via_proxy(server, "unreachable_commit", timeout).await;
    l.transfer().await;
    proxy.cut_after_commit();
    proxy.retarget(nowhere());
    let started = Instant::now();
    let (op, r) = l.try_transfer(&|| {}).await;
    let took = started.elapsed();
    match r {
        Err(LedgerError::Txn(e @ db_txn::Error::CommitUnknown { .. })) => {
            assert!(e.is_commit_unknown());
        }
        other => panic!("expected CommitUnknown, got {other:?}"),
    }
    eprintln!("unresolved after {took:?}");
    assert!(took >= timeout, "gave up before the timeout: {took:?}");
    assert!(
        took < timeout + Duration::from_secs(3),
        "not bounded by the timeout: {took:?}"
    );
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (0, 0, 1, 0), "{s:?}");
    proxy.retarget(upstream(server));
    assert_eq!(l.times_applied(&op), 1, "it had committed");
    l.transfer().await;
    l.assert_consistent(1);
    l.assert_no_leak().await;
}

/// With `resolve_commit`, COMMIT is held by the network (the server's
/// session stays open in its transaction): the liveness probe cuts the
/// connection, the resolver ends the session and learns that it did not
/// commit, the body runs again; the held COMMIT, delivered later, finds the
/// session gone.
pub async fn held_commit_resolved<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = resolving_via_proxy(server, "held_commit", BOUND).await;
    l.transfer().await;
    proxy.hold_commit();
    let runs = AtomicU32::new(0);
    let started = Instant::now();
    l.transfer_with(&counting(&runs)).await;
    let took = started.elapsed();
    eprintln!("held COMMIT resolved after {took:?}");
    assert!(!proxy.commit_fault_pending(), "the COMMIT was held");
    proxy.lift_blackhole();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the body ran again");
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (0, 1, 0, 1), "{s:?}");
    // The held COMMIT is delivered now, to a session that is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    l.transfer().await;
    l.assert_consistent(0);
    // Only the pool's connections: the lost session is gone.
    let mut last = String::new();
    let gone = eventually(Duration::from_secs(10), || {
        let open = i64::from(l.pool.stats().connections);
        let count = server.connection_count(&l.database);
        last = format!("{count} on the server, {open} in the pool");
        count == open
    })
    .await;
    assert!(gone, "{last}");
    l.assert_bounded(BOUND);
}
