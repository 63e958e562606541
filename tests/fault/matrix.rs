//! The fault matrix: one function per fault, generic over the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use db_txn::{Pool, PoolStats};
use diesel::connection::SimpleConnection;

use super::ledger::{Ledger, LedgerError};
use super::TestServer;

/// A call that succeeds after a fault takes at most this long here.
const BOUND: Duration = Duration::from_secs(15);

fn stats<S: TestServer>(l: &Ledger<'_, S>) -> PoolStats {
    l.pool.stats()
}

/// The server drops a connection that idled past its limit (MariaDB
/// `wait_timeout`, PostgreSQL `idle_session_timeout`), set on the session
/// behind the pool's back as in the seeds' experiment: the checkout's ping
/// finds it dead and a fresh connection serves the call.
pub fn idle_past_server_timeout<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "idle_timeout", |url| Ledger::<S>::pool(url, 1));
    for _ in 0..3 {
        l.pool
            .get()
            .expect("conn")
            .batch_execute(&S::idle_limit_sql(1))
            .expect("set the limit");
        thread::sleep(Duration::from_millis(2200));
        l.transfer();
    }
    let s = stats(&l);
    assert_eq!(
        s.disconnects, 3,
        "each idle connection was found dead: {s:?}"
    );
    assert_eq!((s.retries, s.opened), (0, 4), "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
    l.assert_bounded(BOUND);
}

/// KILL / pg_terminate_backend between transactions, on a connection the
/// pool trusts without a ping (used a moment ago): BEGIN finds it dead, the
/// body runs on a fresh connection.
pub fn kill_between_transactions<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "kill_between", |url| {
        Pool::builder(url)
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10))
            // Trust a used connection for a minute: only the retry can save the call.
            .ping_window(Duration::from_secs(60))
            .build()
            .expect("pool")
    });
    l.transfer();
    server.kill_all(&l.database);
    l.transfer();
    let s = stats(&l);
    assert_eq!(s.retries, 1, "{s:?}");
    assert!(s.disconnects >= 1, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
    l.assert_bounded(BOUND);
}

/// The same, with the default ping window: after a disconnect the pool
/// pings every older connection at its next checkout.
pub fn kill_between_transactions_then_ping<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "kill_ping", |url| Ledger::<S>::pool(url, 2));
    l.transfer();
    server.kill_all(&l.database);
    thread::sleep(Duration::from_millis(600));
    l.transfer();
    let s = stats(&l);
    assert_eq!(s.retries, 0, "the ping caught it before BEGIN: {s:?}");
    assert!(s.pings >= 1, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// KILL / pg_terminate_backend in the middle of a transaction: the body's
/// next statement fails, the ROLLBACK confirms the connection is gone, the
/// whole body runs again.
pub fn kill_mid_transaction<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "kill_mid", |url| Ledger::<S>::pool(url, 2));
    l.transfer();
    let fired = AtomicBool::new(false);
    let database = l.database.clone();
    l.transfer_with(&|| {
        if !fired.swap(true, Ordering::SeqCst) {
            server.kill_all(&database);
        }
    });
    let s = stats(&l);
    assert_eq!(s.retries, 1, "{s:?}");
    assert!(s.rollbacks >= 1, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
    l.assert_bounded(BOUND);
}

/// The body's own error: rolled back, not retried, returned as is.
pub fn error_in_body<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "error_body", |url| Ledger::<S>::pool(url, 2));
    l.transfer();
    // A duplicate operation id: the INSERT fails with a unique violation.
    let dup = l.done[0].clone();
    let r = super::ledger::transfer(&l.pool, &dup, 0, 1, 5, &|| {});
    assert!(matches!(r, Err(LedgerError::Db(_))), "{r:?}");
    let s = stats(&l);
    assert_eq!((s.retries, s.rollbacks), (0, 1), "{s:?}");
    assert_eq!(l.times_applied(&dup), 1);
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// A panic in the body after a write: rolled back, the panic reaches the
/// caller, the connection goes back to the pool healthy (no reconnect).
pub fn panic_in_body<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "panic_body", |url| Ledger::<S>::pool(url, 1));
    l.transfer();
    let opened = stats(&l).opened;
    let pool = l.pool.clone();
    let caught = std::panic::catch_unwind(|| {
        super::ledger::transfer(&pool, "doomed", 0, 1, 5, &|| {
            panic!("mid-transaction panic")
        })
    });
    assert!(caught.is_err(), "the panic must reach the caller");
    assert_eq!(l.times_applied("doomed"), 0, "rolled back");
    l.transfer();
    let s = stats(&l);
    assert_eq!(
        s.opened, opened,
        "the same connection served after the panic: {s:?}"
    );
    assert_eq!(s.closed, 0, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// A server restart between transactions: every pooled connection is dead.
pub fn server_restart<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "restart", |url| Ledger::<S>::pool(url, 3));
    // Three connections in the pool.
    thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let _c = l.pool.get().expect("conn");
                thread::sleep(Duration::from_millis(100));
            });
        }
    });
    l.transfer();
    server.restart();
    for _ in 0..6 {
        l.transfer();
    }
    let s = stats(&l);
    assert!(s.disconnects >= 1, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
    l.assert_bounded(BOUND);
}

/// The server is down for two seconds; a call made meanwhile waits for it
/// (within the checkout timeout) and succeeds.
pub fn server_down_then_back<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "down_up", |url| Ledger::<S>::pool(url, 2));
    l.transfer();
    server.stop();
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_secs(2));
            server.start_again();
        });
        l.transfer();
    });
    l.transfer();
    // The connect r2d2 runs tries every 2 ms in the first second down.
    let failures = stats(&l).connect_failures;
    assert!(
        failures >= 100,
        "{failures} failed connects in two seconds down: the pool did not poll"
    );
    l.assert_consistent(0);
    l.assert_no_leak();
    l.assert_bounded(Duration::from_secs(10) + Duration::from_secs(2));
}

/// The server is down for most of a second while four calls wait for it:
/// the pool tries to connect every 2 ms or so (a few tries per pause at
/// most however many calls wait, and not slower and slower as the outage
/// goes on), and all four go through soon after it is back.
pub fn waiting_calls_take_turns<S: TestServer>(server: &S) {
    const DOWN: Duration = Duration::from_millis(600);
    let mut l = Ledger::new(server, "turns", |url| Ledger::<S>::pool(url, 4));
    l.transfer();
    server.stop();
    let failures_before = stats(&l).connect_failures;
    let ops: Vec<_> = (0..4).map(|_| l.next_op()).collect();
    let started = Instant::now();
    let (back_at, ended) = thread::scope(|s| {
        let pool = &l.pool;
        let calls: Vec<_> = ops
            .iter()
            .map(|(op, from, to)| {
                s.spawn(move || {
                    super::ledger::transfer(pool, op, *from, *to, 7, &|| {})
                        .map(|()| Instant::now())
                })
            })
            .collect();
        thread::sleep(DOWN);
        server.start_again();
        let back_at = Instant::now();
        let ended: Vec<_> = calls
            .into_iter()
            .map(|c| c.join().expect("caller thread"))
            .collect();
        (back_at, ended)
    });
    let outage = back_at - started;
    for (ended, (op, _, _)) in ended.iter().zip(&ops) {
        let ended = ended
            .as_ref()
            .unwrap_or_else(|e| panic!("{op} reached the caller as an error: {e:?}"));
        let late = ended.saturating_duration_since(back_at);
        eprintln!("{op} went through {late:?} after the server was back");
        assert!(
            late < Duration::from_millis(500),
            "{op} went through {late:?} after the server was back"
        );
        l.acknowledge(op);
    }
    let failures = stats(&l).connect_failures - failures_before;
    db_txn_tests::pace::assert_paced(failures, DOWN, outage, 4, 3);
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// The server freezes (SIGSTOP) for two seconds while a transaction runs; the
/// call completes once it thaws.
pub fn frozen_server<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "frozen", |url| Ledger::<S>::pool(url, 2));
    l.transfer();
    let started = Instant::now();
    thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(200));
            server.freeze();
            thread::sleep(Duration::from_secs(2));
            server.thaw();
        });
        l.transfer_with(&|| thread::sleep(Duration::from_millis(400)));
    });
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the call did wait for the thaw"
    );
    l.assert_consistent(0);
    l.assert_no_leak();
    l.assert_bounded(BOUND);
}

/// Bad input: a wrong port, a wrong password, a wrong database: a clear error
/// at once, never an endless retry.
pub fn bad_urls<S: TestServer>(server: &S, wrong_password_url: String) {
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
        let err = Pool::<S::Conn>::builder(url.clone())
            .checkout_timeout(Duration::from_secs(5))
            .build()
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

/// A ledger whose pool reaches the server through a fault-injecting proxy
/// running in a process of its own (the server sees the proxy's address).
pub fn via_proxy<'s, S: TestServer>(
    server: &'s S,
    name: &str,
    configure: impl FnOnce(db_txn::PoolBuilder<S::Conn>) -> db_txn::PoolBuilder<S::Conn>,
) -> (db_txn_tests::ProxyProcess, Ledger<'s, S>) {
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    let proxy = db_txn_tests::ProxyProcess::start(upstream).unwrap_or_else(|e| panic!("{e}"));
    let port = proxy.port();
    let l = Ledger::new(server, name, |url| {
        let database = url.rsplit('/').next().expect("database in url").to_owned();
        let builder = Pool::builder(server.url_via_port(&database, port))
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10));
        configure(builder).build().expect("pool")
    });
    (proxy, l)
}

/// The network cuts every connection (a proxy or load balancer restart).
pub fn proxy_cut<S: TestServer>(server: &S) {
    let (proxy, mut l) = via_proxy(server, "proxy_cut", |b| {
        b.ping_window(Duration::from_secs(60))
    });
    l.transfer();
    proxy.cut_all();
    l.transfer();
    let fired = AtomicBool::new(false);
    l.transfer_with(&|| {
        if !fired.swap(true, Ordering::SeqCst) {
            proxy.cut_all();
        }
    });
    let s = stats(&l);
    assert_eq!(s.retries, 2, "one retry per cut: {s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
    l.assert_bounded(BOUND);
}

/// A NAT or firewall forgets idle connections: their packets vanish, nothing
/// says so. `max_idle` below the device's timeout retires them unpinged (a
/// ping would hang on the dead path).
pub fn proxy_blackhole_idle<S: TestServer>(server: &S) {
    let (proxy, mut l) = via_proxy(server, "proxy_blackhole", |b| {
        b.max_idle(Duration::from_millis(800))
    });
    l.transfer();
    proxy.blackhole_existing();
    thread::sleep(Duration::from_millis(1000));
    l.transfer();
    let s = stats(&l);
    assert!(
        s.recycled >= 1,
        "the idle connection was retired unpinged: {s:?}"
    );
    l.assert_consistent(0);
    l.assert_bounded(Duration::from_secs(5));
    drop(proxy);
}

/// Without `resolve_commit`, the link dies right after COMMIT reached the
/// server: the transaction committed but the client never heard. The caller
/// gets the distinct commit-unknown error, never a retry, and the row is
/// there exactly once.
pub fn cut_after_commit<S: TestServer>(server: &S) {
    let (proxy, mut l) = via_proxy(server, "cut_commit", |b| b);
    l.transfer();
    proxy.cut_after_commit();
    let (op, r) = l.try_transfer(&|| {});
    match r {
        Err(LedgerError::Txn(e @ db_txn::Error::CommitUnknown { .. })) => {
            assert!(e.is_commit_unknown());
            assert!(e.to_string().contains("may or may not"), "{e}");
        }
        other => panic!("expected CommitUnknown, got {other:?}"),
    }
    let s = stats(&l);
    assert_eq!((s.retries, s.commit_unknowns), (0, 1), "{s:?}");
    assert_eq!(l.times_applied(&op), 1, "committed exactly once");
    // The caller's check-then-redo finds it done; later calls work.
    l.transfer();
    l.assert_consistent(1);
    l.assert_no_leak();
}

/// `timeout = "1s"`: the server cancels a statement that runs longer, the
/// transaction rolls back, and the connection serves the next call.
pub fn statement_timeout<S: TestServer>(server: &S) {
    let l = Ledger::new(server, "stmt_timeout", |url| Ledger::<S>::pool(url, 1));
    let started = Instant::now();
    let r = slow::<S::Conn>(&l.pool, &S::sleep_sql(5));
    let took = started.elapsed();
    assert!(r.is_err(), "the 5 s statement must be cancelled");
    assert!(took < Duration::from_secs(4), "cancelled after {took:?}");
    let fast = slow::<S::Conn>(&l.pool, &S::sleep_sql(0));
    assert!(fast.is_ok(), "{fast:?}");
    assert_eq!(l.pool.stats().opened, 1, "the same connection served both");
}

#[db_txn::db_txn(pool = pool, timeout = "1s", retry = 0)]
fn slow<C: db_txn::TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    sql: &str,
) -> Result<(), LedgerError> {
    conn.batch_execute(sql)?;
    Ok(())
}

/// The server's idle limit is read at connect (MariaDB `wait_timeout`), and a
/// connection idle close to it is retired without a ping: no round trip, no
/// dead connection ever handed out. (PostgreSQL has no such limit by default.)
pub fn recycled_before_server_idle_limit<S: TestServer>(server: &S) {
    // Sessions opened from now on inherit a 3 s wait_timeout.
    server.exec("SET GLOBAL wait_timeout = 3");
    let mut l = Ledger::new(server, "recycle", |url| Ledger::<S>::pool(url, 1));
    l.transfer();
    thread::sleep(Duration::from_millis(2300));
    l.transfer();
    let s = stats(&l);
    assert!(s.recycled >= 1, "retired before the server's limit: {s:?}");
    assert_eq!((s.pings, s.disconnects, s.retries), (0, 0, 0), "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// Two transactions that lock the same rows in opposite orders: the server
/// picks a deadlock victim, and `retry_conflicts` runs its body again.
pub fn deadlock_is_retried<S: TestServer>(server: &S) {
    let l = Ledger::new(server, "deadlock", |url| Ledger::<S>::pool(url, 2));
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<_> = thread::scope(|s| {
        let handles: Vec<_> = [(0, 1), (1, 0)]
            .into_iter()
            .map(|(first, second)| {
                let (pool, barrier) = (&l.pool, &barrier);
                s.spawn(move || {
                    let attempt = std::sync::atomic::AtomicU32::new(0);
                    lock_both(pool, first, second, &|| {
                        if attempt.fetch_add(1, Ordering::SeqCst) == 0 {
                            barrier.wait();
                        }
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no panic"))
            .collect()
    });
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
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

#[db_txn::db_txn(pool = pool, retry_conflicts = 3)]
fn lock_both<C: db_txn::TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    first: i64,
    second: i64,
    between: &dyn Fn(),
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "UPDATE accounts SET balance = balance + 1 WHERE id = {first}"
    ))?;
    between();
    conn.batch_execute(&format!(
        "UPDATE accounts SET balance = balance + 1 WHERE id = {second}"
    ))?;
    Ok(())
}

/// A server that accepts TCP connections but never answers (a black-holed
/// address): building the pool fails within the checkout timeout instead of
/// hanging start-up; with PostgreSQL's `connect_timeout` in the URL, libpq
/// itself gives up first.
pub fn blackholed_server_at_start<S: TestServer>(server: &S, url_suffix: &str) -> db_txn::Error {
    let proxy = db_txn_tests::ProxyProcess::start(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        server.port(),
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    proxy.blackhole_all();
    let url = format!("{}{url_suffix}", server.url_via_port("test", proxy.port()));
    let started = Instant::now();
    let err = Pool::<S::Conn>::builder(url)
        .checkout_timeout(Duration::from_secs(3))
        .build()
        .expect_err("nothing answers");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}: {err}");
    eprintln!("black-holed server: {err} after {took:?}");
    err
}

/// A server frozen for good (SIGSTOP) while a statement waits: with
/// `stall_timeout` the watchdog shuts the socket down, the call ends with an
/// error within the configured bounds instead of blocking until TCP gives up,
/// nothing is half-applied, and after the thaw the pool serves again.
pub fn frozen_server_with_stall_timeout<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "frozen_stall", |url| {
        Pool::builder(url)
            .max_size(2)
            .checkout_timeout(Duration::from_secs(2))
            .stall_timeout(Duration::from_secs(1))
            .build()
            .expect("pool")
    });
    l.transfer();
    server.freeze();
    let started = Instant::now();
    let (op, r) = l.try_transfer(&|| {});
    let took = started.elapsed();
    server.thaw();
    assert!(r.is_err(), "a frozen server cannot serve: {r:?}");
    // One stall (1 s) on the dead statement, then the retry's checkout (2 s).
    assert!(
        took < Duration::from_secs(5),
        "bounded by stall + checkout timeouts: {took:?}"
    );
    eprintln!("frozen server: {r:?} after {took:?}");
    assert_eq!(l.times_applied(&op), 0, "nothing half-applied");
    l.transfer();
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// A `wait_timeout` set by the pool's `on_connect` hook is the limit the pool
/// works with: the idle connection is retired before it, without a ping.
pub fn recycled_when_on_connect_sets_the_limit<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "recycle_hook", |url| {
        Pool::builder(url)
            .max_size(1)
            .on_connect(|c: &mut S::Conn| c.batch_execute(&S::idle_limit_sql(3)))
            .build()
            .expect("pool")
    });
    l.transfer();
    thread::sleep(Duration::from_millis(2300));
    l.transfer();
    let s = stats(&l);
    assert!(s.recycled >= 1, "{s:?}");
    assert_eq!((s.pings, s.disconnects, s.retries), (0, 0, 0), "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// The link dies right after the COMMIT of a read-only transaction: nothing
/// was being committed, so the caller gets its result, not an error.
pub fn cut_after_read_only_commit<S: TestServer>(server: &S) {
    let (proxy, mut l) = via_proxy(server, "cut_ro_commit", |b| b);
    l.transfer();
    proxy.cut_after_commit();
    let r = read_ledger::<S::Conn>(&l.pool);
    assert!(r.is_ok(), "{r:?}");
    assert!(!proxy.commit_fault_pending(), "the COMMIT was cut");
    let s = stats(&l);
    assert_eq!((s.commit_unknowns, s.retries), (0, 0), "{s:?}");
    assert!(s.disconnects >= 1, "{s:?}");
    l.transfer();
    l.assert_consistent(0);
    l.assert_no_leak();
}

#[db_txn::db_txn(pool = pool, read_only)]
fn read_ledger<C: db_txn::TxnConnection>(conn: &mut C, pool: &Pool<C>) -> Result<(), LedgerError> {
    conn.batch_execute("SELECT COUNT(*) FROM ops")?;
    Ok(())
}

/// A ledger whose pool resolves lost COMMITs (`resolve_commit(true)`) and
/// reaches the server through the fault proxy in a process of its own.
fn resolving_via_proxy<'s, S: TestServer>(
    server: &'s S,
    name: &str,
    resolution_timeout: Duration,
) -> (db_txn_tests::ProxyProcess, Ledger<'s, S>) {
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    let proxy = db_txn_tests::ProxyProcess::start(upstream).expect("proxy process");
    let port = proxy.port();
    let l = Ledger::new(server, name, |url| {
        let database = url.rsplit('/').next().expect("database in url").to_owned();
        Pool::builder(server.url_via_port(&database, port))
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10))
            .resolve_commit(true)
            .commit_resolution_timeout(resolution_timeout)
            .build()
            .expect("pool")
    });
    (proxy, l)
}

/// Counts the runs of a transfer's body.
fn counting(runs: &std::sync::atomic::AtomicU32) -> impl Fn() + '_ {
    move || {
        runs.fetch_add(1, Ordering::SeqCst);
    }
}

/// `(lost_commits_committed, lost_commits_aborted, commit_unknowns, retries)`.
fn resolutions(s: &PoolStats) -> (u64, u64, u64, u64) {
    (
        s.lost_commits_committed,
        s.lost_commits_aborted,
        s.commit_unknowns,
        s.retries,
    )
}

/// With `resolve_commit`, the link dies right after COMMIT reached the
/// server: the server says the transaction committed, so the caller gets the
/// body's value; the body ran once and the row is there once.
pub fn cut_after_commit_resolved<S: TestServer>(server: &S) {
    let (proxy, mut l) = resolving_via_proxy(server, "cut_commit_resolved", BOUND);
    l.transfer();
    proxy.cut_after_commit();
    let runs = std::sync::atomic::AtomicU32::new(0);
    let started = Instant::now();
    l.transfer_with(&counting(&runs));
    eprintln!("resolved as committed in {:?}", started.elapsed());
    assert!(!proxy.commit_fault_pending(), "the COMMIT was cut");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
    let s = stats(&l);
    assert_eq!(resolutions(&s), (1, 0, 0, 0), "{s:?}");
    let op = l.done.last().expect("acknowledged").clone();
    assert_eq!(l.times_applied(&op), 1, "committed exactly once");
    l.transfer();
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// With `resolve_commit`, COMMIT never reaches the server (the link is cut
/// where it begins): the server says the transaction did not commit, so
/// the body runs again, as after a loss before COMMIT; the row is there once.
pub fn dropped_commit_resolved<S: TestServer>(server: &S) {
    let (proxy, mut l) = resolving_via_proxy(server, "drop_commit_resolved", BOUND);
    l.transfer();
    proxy.drop_commit();
    let runs = std::sync::atomic::AtomicU32::new(0);
    l.transfer_with(&counting(&runs));
    assert!(!proxy.commit_fault_pending(), "the COMMIT was dropped");
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the body ran again");
    let s = stats(&l);
    assert_eq!(resolutions(&s), (0, 1, 0, 1), "{s:?}");
    let op = l.done.last().expect("acknowledged").clone();
    assert_eq!(l.times_applied(&op), 1, "applied exactly once");
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// With `resolve_commit`, the server is killed (SIGKILL) while a call is in
/// its COMMIT and restarted: once after COMMIT reached the server (the
/// reply cut), once when COMMIT never reached it. The proxy sends new
/// connections nowhere meanwhile, so the outcome is asked of the restarted
/// server: committed, then not committed (the body runs again); the ledger
/// is exact.
pub fn crash_during_commit_resolved<S: TestServer>(server: &S) {
    let (proxy, mut l) = resolving_via_proxy(server, "crash_commit_resolved", BOUND);
    l.transfer();
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], server.port()));
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], db_txn_tests::ports::free_port()));
    let mut runs_per_call = Vec::new();
    for (arm, what) in [
        (
            &(|p: &db_txn_tests::ProxyProcess| p.cut_after_commit()) as &dyn Fn(_),
            "cut after",
        ),
        (&|p: &db_txn_tests::ProxyProcess| p.drop_commit(), "dropped"),
    ] {
        arm(&proxy);
        proxy.retarget(nowhere);
        let runs = std::sync::atomic::AtomicU32::new(0);
        thread::scope(|s| {
            s.spawn(|| {
                let waited = Instant::now();
                while proxy.commit_fault_pending() {
                    assert!(waited.elapsed() < BOUND, "the COMMIT never came");
                    thread::sleep(Duration::from_millis(1));
                }
                server.crash();
                server.start_again();
                proxy.retarget(upstream);
            });
            l.transfer_with(&counting(&runs));
        });
        eprintln!("COMMIT {what}, server crashed: the body ran {runs:?} time(s)");
        runs_per_call.push(runs.load(Ordering::SeqCst));
    }
    assert_eq!(runs_per_call, [1, 2], "committed once, then run again");
    let s = stats(&l);
    assert_eq!(resolutions(&s), (1, 1, 0, 1), "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
    l.assert_bounded(BOUND);
}

/// With `resolve_commit`, the server cannot be reached after the link died
/// right after COMMIT: the call gives `CommitUnknown` once the resolution
/// timeout (2 s here) has run out, and not much later.
pub fn unreachable_after_commit_is_unknown<S: TestServer>(server: &S) {
    let timeout = Duration::from_secs(2);
    let (proxy, mut l) = resolving_via_proxy(server, "unreachable_commit", timeout);
    l.transfer();
    proxy.cut_after_commit();
    let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], db_txn_tests::ports::free_port()));
    proxy.retarget(nowhere);
    let started = Instant::now();
    let (op, r) = l.try_transfer(&|| {});
    let took = started.elapsed();
    match r {
        Err(LedgerError::Txn(db_txn::Error::CommitUnknown { .. })) => {}
        other => panic!("expected CommitUnknown, got {other:?}"),
    }
    eprintln!("unresolved after {took:?}");
    assert!(took >= timeout, "gave up before the timeout: {took:?}");
    assert!(
        took < timeout + Duration::from_secs(3),
        "not bounded by the timeout: {took:?}"
    );
    let s = stats(&l);
    assert_eq!(resolutions(&s), (0, 0, 1, 0), "{s:?}");
    proxy.retarget(std::net::SocketAddr::from(([127, 0, 0, 1], server.port())));
    assert_eq!(l.times_applied(&op), 1, "it had committed");
    l.transfer();
    l.assert_consistent(1);
    l.assert_no_leak();
}

/// With `resolve_commit`, COMMIT is held by the network (a NAT that forgot
/// the link: the server's session stays open in its transaction). The
/// liveness probe cuts the connection; the resolver finds the transaction
/// still open, ends its session (KILL / pg_terminate_backend, matched by
/// pid and transaction id) and learns that it did not commit: the body
/// runs again. The held COMMIT, delivered later, finds the session gone:
/// the row is there once.
pub fn held_commit_resolved<S: TestServer>(server: &S) {
    let (proxy, mut l) = resolving_via_proxy(server, "held_commit", BOUND);
    l.transfer();
    proxy.hold_commit();
    let runs = std::sync::atomic::AtomicU32::new(0);
    let started = Instant::now();
    l.transfer_with(&counting(&runs));
    let took = started.elapsed();
    eprintln!("held COMMIT resolved after {took:?}");
    assert!(!proxy.commit_fault_pending(), "the COMMIT was held");
    proxy.lift_blackhole();
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the body ran again");
    let s = stats(&l);
    assert_eq!(resolutions(&s), (0, 1, 0, 1), "{s:?}");
    // The held COMMIT is delivered now, to a session that is gone.
    thread::sleep(Duration::from_millis(300));
    l.transfer();
    l.assert_consistent(0);
    // Only the pool's connections (the liveness probe keeps none): the
    // lost session is gone.
    let open = i64::from(l.pool.stats().connections);
    let count = server.wait_connection_count(&l.database, open, Duration::from_secs(10));
    assert_eq!(count, open, "{:?}", l.pool.stats());
    l.assert_bounded(BOUND);
}
