//! The read-replica rows of `tests/fault/topology.rs` on the async form:
//! `read_only` calls on a replica, a replica that goes down or is promoted,
//! read-your-writes under replication lag, and a standby's recovery
//! conflict. The same servers, faults and assertions (the port of the server
//! that answered, no caller error, bounds from the configured timeouts),
//! except where the async pool's read-your-writes floor is per pool rather
//! than per thread (see [`replica_lag_read_your_writes`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_txn::{AsyncPool, AsyncPoolBuilder, PoolStats, WriteToken};

use crate::ledger::Ledger;
use crate::replicated::{look, port_of_writer, Replicated, V};
use crate::server::eventually;
use crate::topology::{database, pair};

/// A `read_only` call on `pool`: the port of the server that answered, and
/// how many times `op` is in its ledger. Any error fails the test.
async fn read<S: Replicated>(pool: &AsyncPool<S::Conn>, op: &str) -> (i64, i64)
where
    diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'static, S::Conn, V>,
{
    look(pool, S::PORT_SQL, op)
        .await
        .unwrap_or_else(|e| panic!("a read failed: {e:?}"))
}

/// A pool on `url` (the primary) with `replica_url` as its read replica.
async fn with_replica<S: Replicated>(
    url: String,
    replica_url: String,
    configure: impl FnOnce(AsyncPoolBuilder<S::Conn>) -> AsyncPoolBuilder<S::Conn>,
) -> AsyncPool<S::Conn> {
    let builder = AsyncPool::builder(url)
        .max_size(4)
        .checkout_timeout(Duration::from_secs(10))
        .replica(replica_url);
    configure(builder).build().await.expect("pool")
}

/// The ledger of `name` on `primary`, its pool reading from `replica`.
async fn ledger<'s, S: Replicated>(
    primary: &'s S,
    replica: &S,
    name: &str,
    configure: impl FnOnce(AsyncPoolBuilder<S::Conn>) -> AsyncPoolBuilder<S::Conn>,
) -> Ledger<'s, S> {
    let replica_url = replica.url_for(&database::<S>(name));
    let l = Ledger::new(primary, name, async |url| {
        with_replica::<S>(url, replica_url, configure).await
    })
    .await;
    assert!(
        replica.caught_up_with(primary),
        "the ledger is on the replica"
    );
    l
}

/// `stats` settles to all-idle and `clients` (a server's count) to its
/// connections.
async fn settles(what: &str, stats: impl Fn() -> PoolStats, clients: impl Fn() -> i64) {
    let mut last = String::new();
    let settled = eventually(Duration::from_secs(10), || {
        let s = stats();
        let server = clients();
        last = format!("{server} server-side connections, pool {s:?}");
        s.connections == s.idle_connections && server == i64::from(s.connections)
    })
    .await;
    assert!(settled, "leak on the {what}: {last}");
}

/// The pool's and the replica pool's connections are all idle, and each
/// server sees exactly its pool's.
async fn assert_no_leak_anywhere<S: Replicated>(l: &Ledger<'_, S>, primary: &S, replica: &S) {
    settles(
        "primary",
        || l.pool.stats(),
        || primary.clients(&l.database),
    )
    .await;
    settles(
        "replica",
        || l.pool.replica_stats()[0],
        || replica.clients(&l.database),
    )
    .await;
}

/// A pool with a read replica: `read_only` calls run on the replica, the
/// others on the primary (asserted by the port of the server that
/// answered), and a read right after a write sees it.
pub async fn replica_routing<S: Replicated>()
where
    diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'static, S::Conn, V>,
{
    let (primary, replica) = pair::<S>();
    // Time enough for the replica to catch up after each write: the bound
    // itself is the lag row's.
    let mut l = ledger(&primary, &replica, "routing", |b| {
        b.read_your_writes_timeout(Duration::from_secs(5))
    })
    .await;
    for _ in 0..10 {
        l.transfer().await;
        let last = l.done.last().expect("an op").clone();
        let (port, n) = read::<S>(&l.pool, &last).await;
        assert_eq!(port, i64::from(replica.port()), "a replica answered");
        assert_eq!(n, 1, "read-your-writes: {last} is visible");
    }
    let writer = port_of_writer(&l.pool, S::PORT_SQL).await.expect("port");
    assert_eq!(writer, i64::from(primary.port()));
    let s = l.pool.stats();
    eprintln!("async routing: {s:?}, replica {:?}", l.pool.replica_stats());
    assert_eq!((s.replica_reads, s.primary_fallbacks), (10, 0), "{s:?}");
    l.assert_consistent(0);
    assert!(replica.caught_up_with(&primary));
    assert_no_leak_anywhere(&l, &primary, &replica).await;
}

/// The replica is killed while a task reads and others write: reads go on,
/// on the primary, with no caller error and within the replica checkout
/// timeout plus one retry.
pub async fn replica_down_falls_back<S: Replicated>()
where
    diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'static, S::Conn, V>,
{
    let (primary, replica) = pair::<S>();
    let mut l = ledger(&primary, &replica, "replica_down", |b| {
        b.replica_checkout_timeout(Duration::from_millis(300))
    })
    .await;
    l.transfer().await;
    let (port, _) = read::<S>(&l.pool, "op-0").await;
    assert_eq!(port, i64::from(replica.port()), "the replica serves");
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let (pool, stop, answered) = (l.pool.clone(), stop.clone(), answered.clone());
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let (port, _) = read::<S>(&pool, "op-0").await;
                slowest = slowest.max(started.elapsed());
                answered.lock().unwrap().push(port);
            }
            slowest
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The kit's calls block: made on this thread (the test's own, not one
    // of the runtime's workers, which run the reader meanwhile).
    replica.crash();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let slowest_read = reader.await.expect("the reader panicked");
    for _ in 0..5 {
        l.transfer().await;
    }
    let answered = std::mem::take(&mut *answered.lock().unwrap());
    let s = l.pool.stats();
    eprintln!(
        "async replica down: {} reads, slowest {slowest_read:?}, {s:?}",
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
    l.assert_no_leak().await;
    let r = l.pool.replica_stats()[0];
    assert_eq!(
        r.connections, r.idle_connections,
        "nothing checked out: {r:?}"
    );
}

/// Replication lag (PostgreSQL `pg_wal_replay_pause()`, MariaDB `STOP SLAVE
/// SQL_THREAD`): a read after a write on the pool never sees the state
/// before the write: it waits at most `read_your_writes_timeout`, then runs
/// on the primary (the next second, without waiting, from any task: the
/// async pool's floor is per pool). The write's token carried to another
/// pool (another process) makes its reads see the write too, where that
/// pool without the token reads the lagging replica. Once replay resumes,
/// the replica serves the read again.
pub async fn replica_lag_read_your_writes<S: Replicated>()
where
    diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'static, S::Conn, V>,
{
    let (primary, replica) = pair::<S>();
    let ryw = Duration::from_millis(300);
    let mut l = ledger(&primary, &replica, "lag", |b| {
        b.read_your_writes_timeout(ryw)
    })
    .await;
    l.transfer().await;
    replica.pause_replication();
    l.transfer().await;
    let op = l.done.last().expect("an op").clone();
    let started = Instant::now();
    let (port, n) = read::<S>(&l.pool, &op).await;
    let took = started.elapsed();
    eprintln!("async lagging replica: read after write took {took:?} on port {port}");
    assert_eq!(n, 1, "the pool's own write is visible");
    assert_eq!(port, i64::from(primary.port()), "the primary served it");
    assert!(took >= ryw, "it waited for the replica first: {took:?}");
    assert!(took < ryw + Duration::from_secs(2), "bounded: {took:?}");

    // Another task, on whichever worker: the pool's floor holds there too,
    // and the replica was just found behind.
    let other_task = {
        let (pool, op) = (l.pool.clone(), op.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            (read::<S>(&pool, &op).await, started.elapsed())
        })
    };
    let (seen, took) = other_task.await.expect("the task panicked");
    assert_eq!(
        seen,
        (i64::from(primary.port()), 1),
        "another task sees the write, on the primary"
    );
    assert!(
        took < ryw,
        "at once: the replica was just found behind: {took:?}"
    );

    let token = l.pool.last_write().await.expect("a token after a write");
    let carried: WriteToken = token.to_string().parse().expect("the token's text");
    assert_eq!(carried, token);
    let elsewhere = with_replica::<S>(l.url.clone(), replica.url_for(&l.database), |b| {
        b.read_your_writes_timeout(ryw)
    })
    .await;
    assert_eq!(
        read::<S>(&elsewhere, &op).await,
        (i64::from(replica.port()), 0),
        "without the token: the lagging replica"
    );
    elsewhere.read_after(&carried);
    let started = Instant::now();
    let fresh = read::<S>(&elsewhere, &op).await;
    let took = started.elapsed();
    assert_eq!(
        fresh,
        (i64::from(primary.port()), 1),
        "with the token: the write is visible, on the primary"
    );
    assert!(
        took >= ryw && took < ryw + Duration::from_secs(2),
        "it waited for the replica first, bounded: {took:?}"
    );
    drop(elsewhere);

    replica.resume_replication();
    // A replica found behind is not waited for again for a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let (port, n) = read::<S>(&l.pool, &op).await;
    let took = started.elapsed();
    eprintln!("async caught-up replica: read after write took {took:?}");
    assert_eq!(
        (port, n),
        (i64::from(replica.port()), 1),
        "the replica caught up and served it"
    );
    assert!(took < ryw + Duration::from_secs(2), "{took:?}");
    let s = l.pool.stats();
    eprintln!("async lag: {s:?}");
    assert_eq!(
        s.replica_waits, 2,
        "the other task's read did not wait: {s:?}"
    );
    assert_eq!(s.primary_fallbacks, 2, "{s:?}");
    l.assert_consistent(0);
    assert!(replica.caught_up_with(&primary));
    assert_no_leak_anywhere(&l, &primary, &replica).await;
}

/// The replica is promoted (it stops replicating) while it serves reads: its
/// connections' role check notices within about a second, and reads go to
/// the primary again.
pub async fn replica_promoted_is_noticed<S: Replicated>()
where
    diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'static, S::Conn, V>,
{
    let (primary, replica) = pair::<S>();
    let mut l = ledger(&primary, &replica, "promoted", |b| b).await;
    l.transfer().await;
    let port = async |l: &Ledger<'_, S>| read::<S>(&l.pool, "op-0").await.0;
    assert_eq!(port(&l).await, i64::from(replica.port()));
    replica.promote();
    let promoted = Instant::now();
    let mut noticed = None;
    while promoted.elapsed() < Duration::from_secs(10) {
        if port(&l).await == i64::from(primary.port()) {
            noticed = Some(promoted.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let noticed = noticed.expect("reads left the promoted replica");
    eprintln!("async: promoted replica noticed after {noticed:?}");
    assert!(noticed < Duration::from_secs(5), "{noticed:?}");
    for _ in 0..10 {
        assert_eq!(port(&l).await, i64::from(primary.port()), "and stay off it");
    }
    l.transfer().await;
    let s = l.pool.stats();
    assert!(s.primary_fallbacks >= 10, "{s:?}");
    l.assert_consistent(0);
    l.assert_no_leak().await;
}

/// A commit whose WAL record ends exactly at a WAL page boundary: the
/// primary then reports its insert location past the next page's header, a
/// location the standby's replay never reaches until something else is
/// written. The write's token names the boundary (the async driver reads
/// the position with the sync one's rule), so the read after it is served by
/// the standby at once instead of waiting out `read_your_writes_timeout`
/// and falling back to the primary.
pub async fn read_your_writes_at_a_wal_page_boundary() {
    use db_txn_tests::Postgres;

    const PAGE: u64 = 8192;
    const LIMIT: usize = 30_000;
    let (primary, standby) = pair::<Postgres>();
    let mut l = ledger(&primary, &standby, "boundary", |b| b).await;
    let insert = "SELECT CAST(pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS BIGINT)";
    let mut commits = 0;
    let at_boundary = loop {
        assert!(
            commits < LIMIT,
            "no commit of {LIMIT} ended at a WAL page boundary: the case was not met"
        );
        l.transfer().await;
        commits += 1;
        let at = primary.query_i64(insert) as u64;
        if at % PAGE == 24 {
            break at;
        }
    };
    let token = l
        .pool
        .last_write()
        .await
        .expect("a token after a write")
        .to_string();
    let lsn = token
        .strip_prefix("lsn:")
        .and_then(|t| t.split_once('/'))
        .and_then(|(hi, lo)| {
            Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
        })
        .unwrap_or_else(|| panic!("a PostgreSQL token: {token}"));
    eprintln!(
        "async: commit {commits} ended at a page boundary: insert location {at_boundary:#X}, \
         token {token}"
    );
    assert_eq!(
        lsn,
        at_boundary - 24,
        "the token names the boundary, not the header's end"
    );

    let before = l.pool.stats();
    let op = l.done.last().expect("an op").clone();
    let (port, n) = read::<Postgres>(&l.pool, &op).await;
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
    assert_no_leak_anywhere(&l, &primary, &standby).await;
}

/// A read on a standby holds a snapshot that the primary's VACUUM removes
/// rows for; the standby (`max_standby_streaming_delay = 0`) cancels it
/// ("conflict with recovery", SQLSTATE 40001): a conflict, run again under
/// `retry_conflicts`, with no caller error.
pub async fn standby_recovery_conflict_is_retried() {
    use db_txn::db_txn;
    use db_txn_tests::Postgres;
    use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

    use crate::ledger::LedgerError;

    #[db_txn(pool = pool, read_only, isolation = repeatable_read, retry_conflicts = 3)]
    async fn hold_snapshot(
        conn: &mut AsyncPgConnection,
        pool: &AsyncPool<AsyncPgConnection>,
        taken: &(dyn Fn() + Sync),
    ) -> Result<i64, LedgerError> {
        use diesel_async::RunQueryDsl;
        let n = diesel::sql_query("SELECT COUNT(*) AS v FROM ops")
            .get_result::<V>(conn)
            .await?
            .v;
        taken();
        // Long enough for the primary's clean-up to be replayed meanwhile.
        conn.batch_execute("SELECT pg_sleep(1.5)").await?;
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
    let mut l = ledger(&primary, &standby, "conflict", |b| b).await;
    l.transfer().await;
    // Rows the standby's snapshot will see, and the primary will remove.
    primary.exec_in(
        &l.database,
        "CREATE TABLE junk (id INT); INSERT INTO junk SELECT generate_series(1, 1000)",
    );
    assert!(standby.caught_up_with(&primary));

    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let attempts = Arc::new(AtomicU64::new(0));
    let reader = {
        let (pool, attempts) = (l.pool.clone(), attempts.clone());
        tokio::spawn(async move {
            let r = hold_snapshot(&pool, &|| {
                if attempts.fetch_add(1, Ordering::SeqCst) == 0 {
                    let _ = tx.send(());
                }
            })
            .await;
            // The sender goes with the call: a call that never took its
            // snapshot does not leave this thread waiting.
            drop(tx);
            r
        })
    };
    // The kit's calls block: made on this thread (the test's own, not one
    // of the runtime's workers, which run the read meanwhile).
    if rx.recv().is_ok() {
        // Rows the standby's snapshot sees, deleted and vacuumed away.
        primary.exec_in(&l.database, "DELETE FROM junk");
        primary.exec_in(&l.database, "VACUUM junk");
    }
    let n = reader
        .await
        .expect("the reader panicked")
        .expect("the conflict was retried");
    let s = l.pool.stats();
    eprintln!(
        "async recovery conflict: {} attempts, {s:?}",
        attempts.load(Ordering::SeqCst)
    );
    assert_eq!(n, 1, "the read saw the ledger");
    assert!(
        attempts.load(Ordering::SeqCst) >= 2,
        "the standby cancelled it once"
    );
    assert!(s.retries >= 1 && s.replica_reads >= 2, "{s:?}");
    l.transfer().await;
    l.assert_consistent(0);
    assert!(standby.caught_up_with(&primary));
    assert_no_leak_anywhere(&l, &primary, &standby).await;
}
