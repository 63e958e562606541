//! Beyond one server: failover, demotion, read replicas and read-your-writes,
//! one function per case, generic over the replicating server (see
//! [`Replicated`]). Each case runs the ledger workload and asserts what every
//! row of the fault matrix asserts: nothing lost, nothing applied twice, no
//! error reaching the caller for a fault before COMMIT, no connection left
//! behind on any server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use db_txn::{db_txn, Pool, PoolBuilder, TxnConnection, WriteToken};
use diesel::connection::SimpleConnection;

use super::ledger::{self, Ledger, LedgerError};
#[cfg(feature = "postgres")]
use super::replicated::one;
use super::replicated::Replicated;

/// A call that succeeds after a fault takes at most this long here.
const BOUND: Duration = Duration::from_secs(15);

/// A transfer whose `before_commit` runs after all its writes.
#[db_txn(pool = pool)]
pub fn transfer_then<C: TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    op: &str,
    before_commit: &dyn Fn(),
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 3); \
         UPDATE accounts SET balance = balance - 3 WHERE id = 0; \
         UPDATE accounts SET balance = balance + 3 WHERE id = 1"
    ))?;
    before_commit();
    Ok(())
}

/// A primary with one replica, caught up.
fn pair<S: Replicated>() -> (S, S) {
    let primary = S::start_primary();
    let replica = primary.start_replica();
    (primary, replica)
}

fn database<S: Replicated>(name: &str) -> String {
    format!("{}_{name}", S::NAME)
}

/// A pool on `primary` with `replica` as its read replica.
fn with_replica<S: Replicated>(
    replica: &S,
    name: &str,
    configure: impl FnOnce(PoolBuilder<S::Conn>) -> PoolBuilder<S::Conn>,
) -> impl FnOnce(String) -> Pool<S::Conn> {
    let replica_url = replica.url_for(&database::<S>(name));
    move |url| {
        let builder = Pool::builder(url)
            .max_size(4)
            .checkout_timeout(Duration::from_secs(10))
            .replica(replica_url);
        configure(builder).build().expect("pool")
    }
}

/// The pool's and each replica pool's connections are all idle, and each
/// server sees exactly its pool's.
fn assert_no_leak_anywhere<S: Replicated>(l: &Ledger<'_, S>, primary: &S, replica: &S) {
    l.assert_no_leak_with(&|| l.pool.stats(), &|| primary.clients(&l.database));
    l.assert_no_leak_with(&|| l.pool.replica_stats()[0], &|| {
        replica.clients(&l.database)
    });
}

/// What the load threads of a failover saw.
#[derive(Default)]
struct Outcomes {
    done: Vec<(String, Instant)>,
    unknown: Vec<String>,
    errors: Vec<String>,
    slowest: Duration,
}

/// How one call of [`load`] ended.
enum Ended {
    Done,
    /// `CommitUnknown`: checked in the data afterwards.
    Unknown,
    /// Any other error, with what the servers' sessions were doing.
    Failed(String),
}

/// Transfers from `threads` threads until `stop`, each op id unique. A call
/// that fails is recorded with `report()` as it was right then (what the
/// servers' sessions were doing: a lock wait that timed out names its
/// holder while the holder is still there).
fn load<S: Replicated>(
    l: &Ledger<'_, S>,
    threads: usize,
    stop: &AtomicBool,
    report: &(dyn Fn() -> String + Sync),
) -> Outcomes {
    let outcomes = Mutex::new(Outcomes::default());
    let next = AtomicU64::new(0);
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst) as i64;
                    let op = format!("load-{n}");
                    let started = Instant::now();
                    // Rows locked in one order (the last account after the
                    // others): concurrent transfers never deadlock.
                    let last = ledger::ACCOUNTS - 1;
                    let r = ledger::transfer(&l.pool, &op, n % last, last, 7, &|| {});
                    // A failure's report is read here, as the call failed
                    // (not behind the lock).
                    let ended = match r {
                        Ok(()) => Ended::Done,
                        Err(LedgerError::Txn(e)) if e.is_commit_unknown() => Ended::Unknown,
                        Err(e) => Ended::Failed(format!("{op}: {e:?}\n{}", report())),
                    };
                    let mut o = outcomes.lock().unwrap();
                    o.slowest = o.slowest.max(started.elapsed());
                    match ended {
                        Ended::Done => o.done.push((op, Instant::now())),
                        Ended::Unknown => o.unknown.push(op),
                        Ended::Failed(error) => o.errors.push(error),
                    }
                }
            });
        }
    });
    outcomes.into_inner().unwrap()
}

/// The primary fails while four threads run transfers through a URL that
/// follows the primary (PostgreSQL: a multi-host URL with
/// `target_session_attrs=read-write`, the primary killed (SIGKILL) and its
/// synchronous standby promoted; MariaDB: a moving address, the primary made
/// read-only, the replica promoted and the proxy re-pointed). No call sees
/// an error but one whose COMMIT was in flight (`CommitUnknown`, then checked
/// in the data); the time from the promotion to the first successful call is
/// printed.
pub fn failover_under_load<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    S::durable(&primary);
    let writer = S::writer(&primary, &replica, &database::<S>("failover"));
    let mut l = Ledger::new(&primary, "failover", |_| {
        Ledger::<S>::pool(writer.url().to_owned(), 4)
    });
    let stop = AtomicBool::new(false);
    let report = || format!("{}\n{}", primary.activity(), replica.activity());
    let (outcomes, failed, promoting, promoted) = thread::scope(|s| {
        let loaded = s.spawn(|| load(&l, 4, &stop, &report));
        thread::sleep(Duration::from_millis(500));
        let failed = Instant::now();
        S::fail_primary(&primary, &replica);
        let promoting = Instant::now();
        S::take_over(&replica, &writer);
        let promoted = Instant::now();
        thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::SeqCst);
        (loaded.join().expect("load"), failed, promoting, promoted)
    });
    assert!(
        outcomes.errors.is_empty(),
        "calls failed, each with what the servers' sessions were doing right \
         after:\n{}",
        outcomes.errors.join("\n\n")
    );
    let before = outcomes.done.iter().filter(|(_, at)| *at < failed).count();
    // Nothing commits between the failure and the promotion's start.
    let first = outcomes
        .done
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at >= promoting)
        .min()
        .expect("calls succeeded after the failover");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let s = l.pool.stats();
    eprintln!(
        "failover: {before} calls before, {} in all, {} commit-unknown; the primary failed \
         {:.1} ms before the promotion began; the promotion took {:.1} ms; first successful \
         call {:.1} ms after it began ({:+.1} ms after it returned); slowest call {:?}; {s:?}",
        outcomes.done.len(),
        outcomes.unknown.len(),
        ms(promoting - failed),
        ms(promoted - promoting),
        ms(first - promoting),
        if first >= promoted {
            ms(first - promoted)
        } else {
            -ms(promoted - first)
        },
        outcomes.slowest,
    );
    assert!(before > 0, "the load ran before the failover");
    assert!(outcomes.slowest < BOUND, "{:?}", outcomes.slowest);
    let mut extra = 0;
    for op in &outcomes.unknown {
        let n = l.times_applied(op);
        assert!(n <= 1, "{op} applied {n} times");
        extra += n;
    }
    l.done = outcomes.done.into_iter().map(|(op, _)| op).collect();
    l.assert_consistent(extra);
    l.assert_no_leak_with(&|| l.pool.stats(), &|| replica.clients(&l.database));
}

/// The primary is demoted read-only while the pool holds four idle
/// connections to it (a plain ping still succeeds there) and the replica
/// takes over (PostgreSQL: fenced with `default_transaction_read_only`,
/// standby promoted, multi-host URL; MariaDB: switchover, moving address).
/// The first write refused as read-only runs again on the new primary,
/// every older connection has its role checked: no caller error, and no
/// connection of the pool stays on the old primary.
pub fn demoted_with_idle_connections<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    let writer = S::writer(&primary, &replica, &database::<S>("demoted"));
    let mut l = Ledger::new(&primary, "demoted", |_| {
        Ledger::<S>::pool(writer.url().to_owned(), 4)
    });
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let _c = l.pool.get().expect("conn");
                thread::sleep(Duration::from_millis(100));
            });
        }
    });
    l.transfer();
    assert_eq!(l.pool.stats().idle_connections, 4, "four idle connections");
    S::demote_over(&primary, &replica, &writer);
    for _ in 0..20 {
        l.transfer();
    }
    let s = l.pool.stats();
    eprintln!("demoted: {s:?}");
    assert!(s.role_mismatches >= 1, "{s:?}");
    assert!(s.retries >= 1, "the first write ran again: {s:?}");
    assert_eq!(s.commit_unknowns, 0, "{s:?}");
    assert_eq!(
        S::writer_port(&l.pool).expect("port"),
        i64::from(replica.port())
    );
    assert_eq!(
        primary.clients(&l.database),
        0,
        "nothing left on the old primary"
    );
    l.assert_consistent(0);
    l.assert_no_leak_with(&|| l.pool.stats(), &|| replica.clients(&l.database));
    l.assert_bounded(BOUND);
}

/// The server turns read-only between a transaction's last write and its
/// COMMIT (a switchover behind a moving address): the COMMIT is refused
/// (MariaDB 1290), which is a definite rollback, so the body runs again on
/// the new primary and commits once; never `CommitUnknown`.
pub fn read_only_at_commit<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    let writer = S::writer(&primary, &replica, &database::<S>("ro_commit"));
    let mut l = Ledger::new(&primary, "ro_commit", |_| {
        Ledger::<S>::pool(writer.url().to_owned(), 2)
    });
    l.transfer();
    let fired = AtomicBool::new(false);
    transfer_then::<S::Conn>(&l.pool, "at-commit", &|| {
        if !fired.swap(true, Ordering::SeqCst) {
            S::demote_over(&primary, &replica, &writer);
        }
    })
    .expect("the refused COMMIT ran again on the new primary");
    l.done.push("at-commit".into());
    let s = l.pool.stats();
    assert_eq!((s.commit_unknowns, s.retries), (0, 1), "{s:?}");
    assert!(s.role_mismatches >= 1, "{s:?}");
    assert_eq!(l.times_applied("at-commit"), 1);
    l.transfer();
    l.assert_consistent(0);
    l.assert_no_leak_with(&|| l.pool.stats(), &|| replica.clients(&l.database));
}

/// A pool with a read replica: `read_only` calls run on the replica, the
/// others on the primary (asserted by the port of the server that
/// answered), and a read right after a write on the same thread sees it.
pub fn replica_routing<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    // Time enough for the replica to catch up after each write: the bound
    // itself is the lag row's.
    let mut l = Ledger::new(
        &primary,
        "routing",
        with_replica(&replica, "routing", |b| {
            b.read_your_writes_timeout(Duration::from_secs(5))
        }),
    );
    assert!(
        replica.caught_up_with(&primary),
        "the ledger is on the replica"
    );
    for _ in 0..10 {
        l.transfer();
        let last = l.done.last().expect("an op").clone();
        let (port, n) = S::look(&l.pool, &last).expect("read");
        assert_eq!(port, i64::from(replica.port()), "a replica answered");
        assert_eq!(n, 1, "read-your-writes: {last} is visible");
    }
    assert_eq!(
        S::writer_port(&l.pool).expect("port"),
        i64::from(primary.port())
    );
    let s = l.pool.stats();
    eprintln!("routing: {s:?}, replica {:?}", l.pool.replica_stats());
    assert_eq!((s.replica_reads, s.primary_fallbacks), (10, 0), "{s:?}");
    l.assert_consistent(0);
    assert!(replica.caught_up_with(&primary));
    assert_no_leak_anywhere(&l, &primary, &replica);
}

/// The replica is killed while reads and writes run: reads go on, on the
/// primary, with no caller error and within the replica checkout timeout
/// plus one retry.
pub fn replica_down_falls_back<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    let mut l = Ledger::new(
        &primary,
        "replica_down",
        with_replica(&replica, "replica_down", |b| {
            b.replica_checkout_timeout(Duration::from_millis(300))
        }),
    );
    assert!(
        replica.caught_up_with(&primary),
        "the ledger is on the replica"
    );
    l.transfer();
    let (port, _) = S::look(&l.pool, "op-0").expect("read");
    assert_eq!(port, i64::from(replica.port()), "the replica serves");
    let stop = AtomicBool::new(false);
    let answered = Mutex::new(Vec::new());
    let slowest_read = thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let (port, _) =
                    S::look(&l.pool, "op-0").unwrap_or_else(|e| panic!("a read failed: {e:?}"));
                slowest = slowest.max(started.elapsed());
                answered.lock().unwrap().push(port);
            }
            slowest
        });
        thread::sleep(Duration::from_millis(300));
        replica.crash();
        thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::SeqCst);
        reader.join().expect("reader")
    });
    for _ in 0..5 {
        l.transfer();
    }
    let answered = answered.into_inner().unwrap();
    let s = l.pool.stats();
    eprintln!(
        "replica down: {} reads, slowest {slowest_read:?}, {s:?}",
        answered.len()
    );
    assert_eq!(
        answered.last(),
        Some(&i64::from(primary.port())),
        "the primary serves the reads once the replica is gone"
    );
    assert!(s.primary_fallbacks >= 1, "{s:?}");
    assert!(slowest_read < Duration::from_secs(5), "{slowest_read:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
    let r = l.pool.replica_stats()[0];
    assert_eq!(
        r.connections, r.idle_connections,
        "nothing checked out: {r:?}"
    );
}

/// Replication lag (PostgreSQL `pg_wal_replay_pause()`, MariaDB `STOP SLAVE
/// SQL_THREAD`): a read after a write on the same thread, or carrying the
/// write's token to another thread, never sees the state before the write:
/// it waits at most `read_your_writes_timeout`, then runs on the primary
/// (the next second, without waiting). A thread without the token still
/// reads the replica (the lag is real). Once replay resumes, the replica
/// serves the read again.
pub fn replica_lag_read_your_writes<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    let ryw = Duration::from_millis(300);
    let mut l = Ledger::new(
        &primary,
        "lag",
        with_replica(&replica, "lag", |b| b.read_your_writes_timeout(ryw)),
    );
    assert!(
        replica.caught_up_with(&primary),
        "the ledger is on the replica"
    );
    l.transfer();
    replica.pause_replication();
    l.transfer();
    let op = l.done.last().expect("an op").clone();
    let started = Instant::now();
    let (port, n) = S::look(&l.pool, &op).expect("read");
    let took = started.elapsed();
    eprintln!("lagging replica: read after write took {took:?} on port {port}");
    assert_eq!(n, 1, "the thread's own write is visible");
    assert_eq!(port, i64::from(primary.port()), "the primary served it");
    assert!(took >= ryw, "it waited for the replica first: {took:?}");
    assert!(took < ryw + Duration::from_secs(2), "bounded: {took:?}");

    let token = l.pool.last_write().expect("a token after a write");
    let carried: WriteToken = token.to_string().parse().expect("the token's text");
    assert_eq!(carried, token);
    let (stale, fresh) = thread::scope(|s| {
        let stale = s
            .spawn(|| S::look(&l.pool, &op).expect("read"))
            .join()
            .expect("thread");
        let fresh = s
            .spawn(|| {
                l.pool.read_after(&carried);
                S::look(&l.pool, &op).expect("read")
            })
            .join()
            .expect("thread");
        (stale, fresh)
    });
    assert_eq!(
        stale,
        (i64::from(replica.port()), 0),
        "without the token: the lagging replica"
    );
    assert_eq!(fresh.1, 1, "with the token: the write is visible");
    assert_eq!(
        fresh.0,
        i64::from(primary.port()),
        "on the primary at once: the replica was just found behind"
    );

    replica.resume_replication();
    // A replica found behind is not waited for again for a second.
    thread::sleep(Duration::from_millis(1100));
    let started = Instant::now();
    let (port, n) = S::look(&l.pool, &op).expect("read");
    let took = started.elapsed();
    eprintln!("caught-up replica: read after write took {took:?}");
    assert_eq!(
        (port, n),
        (i64::from(replica.port()), 1),
        "the replica caught up and served it"
    );
    assert!(took < ryw + Duration::from_secs(2), "{took:?}");
    let s = l.pool.stats();
    eprintln!("lag: {s:?}");
    assert_eq!(s.replica_waits, 2, "the token's read did not wait: {s:?}");
    assert_eq!(s.primary_fallbacks, 2, "{s:?}");
    l.assert_consistent(0);
    assert!(replica.caught_up_with(&primary));
    assert_no_leak_anywhere(&l, &primary, &replica);
}

/// A commit whose WAL record ends exactly at a WAL page boundary: the primary
/// then reports its insert location past the next page's header, a location
/// the standby's replay never reaches until something else is written. The
/// write's token names the boundary, so the read after it is served by the
/// standby at once instead of waiting out `read_your_writes_timeout` and
/// falling back to the primary. (Found by the benchmark: about one commit in
/// 900.)
#[cfg(feature = "postgres")]
pub fn read_your_writes_at_a_wal_page_boundary() {
    use db_txn_tests::Postgres;

    const PAGE: u64 = 8192;
    const LIMIT: usize = 30_000;
    let (primary, standby) = pair::<Postgres>();
    let mut l = Ledger::new(
        &primary,
        "boundary",
        with_replica(&standby, "boundary", |b| b),
    );
    assert!(
        standby.caught_up_with(&primary),
        "the ledger is on the standby"
    );
    let insert = "SELECT CAST(pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS BIGINT)";
    let mut commits = 0;
    let at_boundary = loop {
        assert!(
            commits < LIMIT,
            "no commit of {LIMIT} ended at a WAL page boundary: the case was not met"
        );
        l.transfer();
        commits += 1;
        let at = primary.query_i64(insert) as u64;
        if at % PAGE == 24 {
            break at;
        }
    };
    let token = l
        .pool
        .last_write()
        .expect("a token after a write")
        .to_string();
    let lsn = token
        .strip_prefix("lsn:")
        .and_then(|t| t.split_once('/'))
        .and_then(|(hi, lo)| {
            Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
        })
        .unwrap_or_else(|| panic!("a PostgreSQL token: {token}"));
    eprintln!("commit {commits} ended at a page boundary: insert location {at_boundary:#X}, token {token}");
    assert_eq!(
        lsn,
        at_boundary - 24,
        "the token names the boundary, not the header's end"
    );

    let before = l.pool.stats();
    let op = l.done.last().expect("an op").clone();
    let (port, n) = Postgres::look(&l.pool, &op).expect("read");
    let after = l.pool.stats();
    assert_eq!(n, 1, "read-your-writes: {op} is visible");
    assert_eq!(
        port,
        i64::from(standby.port()),
        "the standby served it: {after:?}"
    );
    assert_eq!(
        after.primary_fallbacks, before.primary_fallbacks,
        "{after:?}"
    );
    l.assert_consistent(0);
    assert_no_leak_anywhere(&l, &primary, &standby);
}

/// The replica is promoted (it stops replicating) while it serves reads: its
/// connections' role check notices within about a second, and reads go to
/// the primary again.
pub fn replica_promoted_is_noticed<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    let mut l = Ledger::new(
        &primary,
        "promoted",
        with_replica(&replica, "promoted", |b| b),
    );
    assert!(
        replica.caught_up_with(&primary),
        "the ledger is on the replica"
    );
    l.transfer();
    let port = |l: &Ledger<'_, S>| S::look(&l.pool, "op-0").expect("read").0;
    assert_eq!(port(&l), i64::from(replica.port()));
    replica.promote();
    let promoted = Instant::now();
    let mut noticed = None;
    while promoted.elapsed() < Duration::from_secs(10) {
        if port(&l) == i64::from(primary.port()) {
            noticed = Some(promoted.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let noticed = noticed.expect("reads left the promoted replica");
    eprintln!("promoted replica noticed after {noticed:?}");
    assert!(noticed < Duration::from_secs(5), "{noticed:?}");
    for _ in 0..10 {
        assert_eq!(port(&l), i64::from(primary.port()), "and stay off it");
    }
    l.transfer();
    let s = l.pool.stats();
    assert!(s.primary_fallbacks >= 10, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak();
}

/// A read on a standby holds a snapshot that the primary's VACUUM removes
/// rows for; the standby (`max_standby_streaming_delay = 0`) cancels it
/// ("conflict with recovery", SQLSTATE 40001): a conflict, run again under
/// `retry_conflicts`, with no caller error.
#[cfg(feature = "postgres")]
pub fn standby_recovery_conflict_is_retried() {
    use db_txn_tests::Postgres;
    use diesel::PgConnection;

    #[db_txn(pool = pool, read_only, isolation = repeatable_read, retry_conflicts = 3)]
    fn hold_snapshot(
        conn: &mut PgConnection,
        pool: &Pool<PgConnection>,
        taken: &dyn Fn(),
    ) -> Result<i64, LedgerError> {
        let n = one(conn, "SELECT COUNT(*) AS v FROM ops")?;
        taken();
        // Long enough for the primary's clean-up to be replayed meanwhile.
        conn.batch_execute("SELECT pg_sleep(1.5)")?;
        Ok(n)
    }

    let (primary, standby) = pair::<Postgres>();
    standby.exec("ALTER SYSTEM SET max_standby_streaming_delay = 0");
    standby.exec("SELECT pg_reload_conf()");
    let applied = "SELECT CAST(current_setting('max_standby_streaming_delay') = '0' AS INT)";
    assert!(db_txn_tests::process::poll_until(
        Duration::from_secs(30),
        || standby.query_i64(applied) == 1
    ));
    let mut l = Ledger::new(
        &primary,
        "conflict",
        with_replica(&standby, "conflict", |b| b),
    );
    l.transfer();
    // Rows the standby's snapshot will see, and the primary will remove.
    primary.exec_in(
        &l.database,
        "CREATE TABLE junk (id INT); INSERT INTO junk SELECT generate_series(1, 1000)",
    );
    assert!(standby.caught_up_with(&primary));

    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let attempts = AtomicU64::new(0);
    let n = thread::scope(|s| {
        let database = l.database.clone();
        let primary = &primary;
        s.spawn(move || {
            if rx.recv().is_ok() {
                // Rows the standby's snapshot sees, deleted and vacuumed away.
                primary.exec_in(&database, "DELETE FROM junk");
                primary.exec_in(&database, "VACUUM junk");
            }
        });
        let r = hold_snapshot(&l.pool, &|| {
            if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                let _ = tx.send(());
            }
        });
        drop(tx);
        r
    })
    .expect("the conflict was retried");
    let s = l.pool.stats();
    eprintln!(
        "recovery conflict: {} attempts, {s:?}",
        attempts.load(Ordering::SeqCst)
    );
    assert_eq!(n, 1, "the read saw the ledger");
    assert!(
        attempts.load(Ordering::SeqCst) >= 2,
        "the standby cancelled it once"
    );
    assert!(s.retries >= 1 && s.replica_reads >= 2, "{s:?}");
    l.transfer();
    l.assert_consistent(0);
    assert!(standby.caught_up_with(&primary));
    assert_no_leak_anywhere(&l, &primary, &standby);
}

#[db_txn(pool = pool, retry = 0)]
fn long_statement<C: TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    sql: &str,
) -> Result<(), LedgerError> {
    conn.batch_execute(sql)?;
    Ok(())
}

/// After a failover, a statement that runs longer than
/// `liveness_check_after` on the new primary is left to run: the liveness
/// probe opens its connection through the pool's URL for each question, so it
/// asks the new primary, which knows the session, and not the old one (still
/// up, read-only), which would call it unknown and have it cut.
pub fn long_statement_after_failover<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    let writer = S::writer(&primary, &replica, &database::<S>("long_after"));
    let mut l = Ledger::new(&primary, "long_after", |_| {
        Pool::builder(writer.url())
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10))
            .liveness_check_after(Some(Duration::from_millis(500)))
            .build()
            .expect("pool")
    });
    l.transfer();
    // The probe asks about this one (busy), on the primary of the moment.
    long_statement::<S::Conn>(&l.pool, &S::sleep_sql(2)).expect("a long statement");
    S::demote_over(&primary, &replica, &writer);
    l.transfer();
    let started = Instant::now();
    let r = long_statement::<S::Conn>(&l.pool, &S::sleep_sql(2));
    let s = l.pool.stats();
    eprintln!(
        "long statement after failover: {r:?} in {:?}, {s:?}",
        started.elapsed()
    );
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(s.stalls_cut, 0, "{s:?}");
    l.assert_consistent(0);
    // The probe keeps no connection: only the pool's are on the new primary,
    // none is left on the old one.
    l.assert_no_leak_with(&|| l.pool.stats(), &|| replica.clients(&l.database));
    assert_eq!(primary.clients(&l.database), 0);
}
