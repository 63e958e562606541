//! Faults that do not announce themselves, with a pool built from a URL and
//! nothing else (the defaults): a link that stops answering, a frozen
//! server, a server that accepts and never answers, a fork inside a
//! transaction, a connection that dies just before COMMIT. Every call must
//! return, a success or a clear error, within a bound stated in terms of the
//! pool's settings (the crate docs' "what bounds what"); the proxy rows run
//! the proxy in a process of its own, so the server sees its address.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use db_txn::{db_txn, Pool, PoolStats, TxnConnection};
use db_txn_tests::ProxyProcess;

use super::ledger::{Ledger, LedgerError};
use super::TestServer;

/// The defaults the bounds below are stated in.
const CHECKOUT: Duration = Duration::from_secs(5);
const CHECK_AFTER: Duration = Duration::from_secs(2);
const PING_CHECK_AFTER: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The watchdog's tick and the grace after an "idle" answer, and a margin
/// for a loaded machine.
const SLACK: Duration = Duration::from_millis(2500);

fn proxy_to<S: TestServer>(server: &S) -> ProxyProcess {
    ProxyProcess::start(SocketAddr::from(([127, 0, 0, 1], server.port())))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A ledger whose pool is built from a URL through `proxy` and nothing else.
fn defaults_via<'s, S: TestServer>(
    server: &'s S,
    name: &str,
    proxy: &ProxyProcess,
) -> Ledger<'s, S> {
    let port = proxy.port();
    Ledger::new(server, name, |url| {
        let database = url.rsplit('/').next().expect("database in url").to_owned();
        Pool::new(server.url_via_port(&database, port)).expect("pool")
    })
}

fn stats<S: TestServer>(l: &Ledger<'_, S>) -> PoolStats {
    l.pool.stats()
}

/// A NAT or firewall forgets an idle flow: packets vanish, nobody sends RST
/// or FIN. With the defaults, the next call's checkout ping gets no answer;
/// the watchdog asks the server (over a new connection), learns the session
/// is idle, shuts the dead link down, and the call runs on a fresh
/// connection: no error, within the ping's check plus one probe.
pub fn blackholed_idle_link<S: TestServer>(server: &S) {
    let proxy = proxy_to(server);
    let mut l = defaults_via(server, "bh_idle", &proxy);
    l.transfer();
    assert!(proxy.blackhole_existing() >= 1);
    // Idle past the ping window: the next checkout pings.
    thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    l.transfer();
    let took = started.elapsed();
    eprintln!("{}: black-holed idle link, call took {took:?}", S::NAME);
    let bound = PING_CHECK_AFTER + PROBE_TIMEOUT + SLACK;
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    let s = stats(&l);
    assert!(s.stalls_cut >= 1, "the dead link was shut down: {s:?}");
    assert_eq!(s.commit_unknowns, 0, "{s:?}");
    l.assert_consistent(0);
    proxy.lift_blackhole();
    l.assert_no_leak();
}

/// The link goes silent in the middle of a transaction (between two
/// statements): the next statement gets no answer; the watchdog finds the
/// session idle on the server, shuts the link down, and the whole body runs
/// again on a fresh connection: no error reaches the caller.
pub fn blackholed_mid_statement<S: TestServer>(server: &S) {
    let proxy = proxy_to(server);
    let mut l = defaults_via(server, "bh_mid", &proxy);
    l.transfer();
    let fired = AtomicBool::new(false);
    let started = Instant::now();
    l.transfer_with(&|| {
        if !fired.swap(true, Ordering::SeqCst) {
            proxy.blackhole_existing();
        }
    });
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
    l.assert_no_leak();
}

/// The link goes silent mid-statement on the first attempt and again on
/// the retry's fresh connection, while the watchdog ends the first dead
/// session over a connection of its own: the retry's socket is still told
/// apart from the watchdog's and watched, so the second silence is cut too
/// and the call ends (`Disconnected` once the retries run out) within two
/// checks plus two probes instead of hanging.
pub fn blackholed_again_on_the_retry<S: TestServer>(server: &S) {
    let proxy = proxy_to(server);
    let mut l = defaults_via(server, "bh_twice", &proxy);
    l.transfer();
    let attempts = AtomicU32::new(0);
    let bound = 2 * (CHECK_AFTER + PROBE_TIMEOUT) + SLACK;
    // A sync call cannot be abandoned: an unwatched link would hang this
    // test (and the harness) for good, so a hang ends the process.
    let (finished, hung) = mpsc::channel::<()>();
    let deadman = thread::spawn(move || {
        if hung.recv_timeout(bound * 2) == Err(mpsc::RecvTimeoutError::Timeout) {
            eprintln!("the retry's silent link was never cut: unwatched");
            std::process::exit(101);
        }
    });
    let started = Instant::now();
    let (op, r) = l.try_transfer(&|| {
        if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
            proxy.blackhole_existing();
        }
    });
    let took = started.elapsed();
    drop(finished);
    deadman.join().expect("deadman");
    eprintln!("{}: black-holed twice: {r:?} after {took:?}", S::NAME);
    let s = stats(&l);
    match &r {
        Err(LedgerError::Txn(db_txn::Error::Disconnected { attempts: 2, .. })) => {
            assert!(s.stalls_cut >= 2, "both silent links were cut: {s:?}");
        }
        // A later attempt (none with the defaults) would run on a link that
        // answers.
        Ok(()) => assert!(s.stalls_cut >= 2 && s.retries >= 2, "{s:?}"),
        other => panic!("expected Disconnected after two attempts, got {other:?}"),
    }
    assert!(took < bound, "took {took:?}, bound {bound:?}");
    proxy.lift_blackhole();
    assert_eq!(
        l.times_applied(&op),
        i64::from(r.is_ok()),
        "applied once or never"
    );
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// The server freezes (SIGSTOP) while a statement waits, reached through a
/// proxy in another process: the probe gets no answer, the link is shut
/// down, the retry's checkout cannot connect either, and the caller gets a
/// `Checkout` error naming the server within check + probe + checkout
/// timeouts. Nothing is half-applied, and after the thaw the pool serves.
pub fn frozen_behind_proxy<S: TestServer>(server: &S) {
    let proxy = proxy_to(server);
    let l = defaults_via(server, "frozen_proxy", &proxy);
    frozen_mid_statement_on(server, l);
    drop(proxy);
}

/// The same with a direct connection.
pub fn frozen_mid_statement<S: TestServer>(server: &S) {
    let l = Ledger::new(server, "frozen_direct", |url| Pool::new(url).expect("pool"));
    frozen_mid_statement_on(server, l);
}

fn frozen_mid_statement_on<S: TestServer>(server: &S, mut l: Ledger<'_, S>) {
    l.transfer();
    let frozen = AtomicBool::new(false);
    let started = Instant::now();
    let (op, r) = l.try_transfer(&|| {
        if !frozen.swap(true, Ordering::SeqCst) {
            server.freeze();
        }
    });
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
    l.transfer();
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// A server that accepts TCP connections and never answers (a black-holed
/// address), for a pool built lazily with the defaults: every call ends
/// within the checkout timeout with an error that names the server and does
/// not blame the pool's size.
pub fn never_answering_server<S: TestServer>(server: &S) {
    let proxy = proxy_to(server);
    proxy.blackhole_all();
    let url = server.url_via_port("test", proxy.port());
    let pool = Pool::<S::Conn>::builder(url).build_lazy();
    for _ in 0..2 {
        let started = Instant::now();
        let err = pool.get().map(drop).expect_err("nothing answers");
        let took = started.elapsed();
        eprintln!("{}: never-answering server: {err} after {took:?}", S::NAME);
        let db_txn::Error::Checkout {
            state, last_error, ..
        } = &err
        else {
            panic!("expected a checkout error, got {err:?}");
        };
        assert!(!state.exhausted(), "{err}");
        let _ = last_error;
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
pub fn long_statement_is_not_cut<S: TestServer>(server: &S) {
    let proxy = proxy_to(server);
    let l = defaults_via(server, "long_stmt", &proxy);
    let started = Instant::now();
    long_statement(&l.pool, &S::sleep_sql(20)).expect("a long statement completes");
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(20), "{took:?}");
    let s = stats(&l);
    assert_eq!((s.stalls_cut, s.retries, s.disconnects), (0, 0, 0), "{s:?}");
    l.assert_no_leak();
}

#[db_txn(pool = pool)]
fn long_statement<C: TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    sql: &str,
) -> Result<(), db_txn::Error> {
    conn.batch_execute(sql)?;
    Ok(())
}

/// The server closes a session (KILL / pg_terminate_backend) after the body's
/// last statement and before COMMIT is sent: the closed socket is seen
/// before COMMIT goes out, so this is a loss before COMMIT (nothing can have
/// committed) and the body runs again, not an unknown commit outcome.
pub fn killed_just_before_commit<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "kill_pre_commit", |url| Ledger::<S>::pool(url, 2));
    l.transfer();
    let fired = AtomicBool::new(false);
    let database = l.database.clone();
    let op = "pre-commit-1";
    let r = insert_then(&l.pool, op, &|| {
        if !fired.swap(true, Ordering::SeqCst) {
            server.kill_all(&database);
            // The FIN reaches the client side at once on loopback.
            thread::sleep(Duration::from_millis(200));
        }
    });
    assert!(r.is_ok(), "{r:?}");
    let s = stats(&l);
    assert_eq!((s.commit_unknowns, s.retries), (0, 1), "{s:?}");
    assert_eq!(l.times_applied(op), 1);
    l.done.push(op.to_owned());
    l.assert_no_leak();
}

/// Inserts a zero-amount op, then runs `after`, then returns (COMMIT).
#[db_txn(pool = pool)]
fn insert_then<C: TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    op: &str,
    after: &dyn Fn(),
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 0)"
    ))?;
    after();
    Ok(())
}

/// The connection is lost on every attempt: when the retries run out, the
/// caller gets `Error::Disconnected` with the driver's error as its source
/// (not the body's error, nor a bare message).
pub fn retries_run_out<S: TestServer>(server: &S) {
    let l = Ledger::new(server, "retries_out", |url| Ledger::<S>::pool(url, 2));
    let database = l.database.clone();
    let attempts = AtomicU32::new(0);
    let r = insert_then(&l.pool, "never", &|| {
        attempts.fetch_add(1, Ordering::SeqCst);
        server.kill_all(&database);
        thread::sleep(Duration::from_millis(200));
    });
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
    l.assert_no_leak();
}

/// A process forked inside an annotated body, where the child returns `Ok`
/// from the body and the parent `Err`: the child's call ends with
/// `Error::Forked` and sends nothing (its own statement and a joined call
/// fail without reaching the server), and the parent's transaction rolls
/// back exactly as its own body decides, on the same connection.
pub fn fork_inside_transaction_parent_rolls_back<S: TestServer>(server: &S) {
    fork_inside_transaction(server, "fork_txn_err", false);
}

/// The same, where the parent returns `Ok`: the parent's rows (written
/// before and after the fork) are committed, the child's never.
pub fn fork_inside_transaction_parent_commits<S: TestServer>(server: &S) {
    fork_inside_transaction(server, "fork_txn_ok", true);
}

fn fork_inside_transaction<S: TestServer>(server: &S, name: &str, parent_ok: bool) {
    let l = Ledger::new(server, name, |url| Ledger::<S>::pool(url, 2));
    let before = stats(&l);
    let me = std::process::id();
    let r = forking_body(&l.pool, parent_ok);
    if std::process::id() != me {
        // The child, back from its call: report and leave at once, without
        // the harness's destructors or exit handlers.
        let forked = matches!(r, Err(LedgerError::Txn(db_txn::Error::Forked { .. })));
        let refused = CHILD_STATEMENT_REFUSED.load(Ordering::SeqCst);
        // SAFETY: ends the child process.
        unsafe { libc::_exit(if forked && refused { 0 } else { 1 }) };
    }
    assert_eq!(r.is_ok(), parent_ok, "{r:?}");
    let rows = |op: &str| l.times_applied(op);
    let want = i64::from(parent_ok);
    assert_eq!(
        (rows("parent-before"), rows("parent-after"), rows("child")),
        (want, want, 0),
        "parent_ok = {parent_ok}"
    );
    let after = stats(&l);
    assert_eq!(
        after.opened,
        before.opened.max(1),
        "no reconnect: {after:?}"
    );
    assert_eq!((after.retries, after.disconnects), (0, 0), "{after:?}");
    // The parent's connection is still the pool's, healthy.
    forking_noop(&l.pool).expect("the parent's connection serves on");
    assert_eq!(stats(&l).opened, after.opened, "{:?}", stats(&l));
    l.assert_no_leak();
}

/// Child exit codes: 0 when its call ended with `Forked` and nothing it
/// tried reached the server.
#[db_txn(pool = pool)]
fn forking_body<C: TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    parent_ok: bool,
) -> Result<(), LedgerError> {
    conn.batch_execute(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('parent-before', 0, 1, 0)",
    )?;
    // SAFETY: the child only runs this body's remaining code and then
    // `_exit`s without running the test harness's destructors.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // The child: its statements must not reach the parent's session,
        // and a joined call must refuse.
        let own = conn
            .batch_execute("INSERT INTO ops (op_id, src, dst, amount) VALUES ('child', 0, 1, 0)");
        let joined = db_txn::lend(conn, || forking_noop(pool));
        let ok = own.is_err() && matches!(joined, Err(db_txn::Error::Forked { .. }));
        // Returning Ok makes a naive runner COMMIT the parent's transaction
        // from the child; the rows checked by the parent say it did not.
        CHILD_STATEMENT_REFUSED.store(ok, Ordering::SeqCst);
        return Ok(());
    }
    let status = wait_child(pid, Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0),
        "the child's call did not end with Forked, or its statement went through \
         (status {status:?})"
    );
    conn.batch_execute(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('parent-after', 0, 1, 0)",
    )?;
    if parent_ok {
        Ok(())
    } else {
        Err(LedgerError::Refused)
    }
}

static CHILD_STATEMENT_REFUSED: AtomicBool = AtomicBool::new(false);

/// A call that only touches its connection.
#[db_txn(pool = pool)]
fn forking_noop<C: TxnConnection>(conn: &mut C, pool: &Pool<C>) -> Result<(), db_txn::Error> {
    conn.batch_execute("SELECT 1")?;
    Ok(())
}

/// A forked child's pool connects on its own (r2d2's worker threads do not
/// exist in a child), bounded the same way: against a server that accepts
/// and never answers, the child's call ends within the checkout timeout.
pub fn forked_child_connects_within_the_checkout_timeout<S: TestServer>(server: &S) {
    let proxy = proxy_to(server);
    let url = server.url_via_port("test", proxy.port());
    let checkout = Duration::from_secs(2);
    let pool = Pool::<S::Conn>::builder(url)
        .checkout_timeout(checkout)
        .build()
        .expect("pool");
    drop(pool.get().expect("the parent connects"));
    proxy.blackhole_all();
    // SAFETY: the child only checks a connection out and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let started = Instant::now();
        let r = pool.get().map(drop);
        let took = started.elapsed();
        let ok = matches!(r, Err(db_txn::Error::Checkout { .. })) && took < checkout + SLACK;
        // SAFETY: ends the child process.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let status = wait_child(pid, checkout + SLACK * 2);
    assert!(
        status.is_some_and(|s| libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0),
        "the child's checkout was not bounded by its checkout timeout (status {status:?})"
    );
    proxy.lift_blackhole();
    drop(pool.get().expect("the parent's pool is untouched"));
}

/// The child's wait status, or `None` (and the child killed) after `limit`.
fn wait_child(pid: libc::pid_t, limit: Duration) -> Option<libc::c_int> {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: polling our own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return Some(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
