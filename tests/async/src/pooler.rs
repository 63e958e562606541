//! The pgbouncer rows of `tests/fault/pooler.rs` on the async form:
//! PostgreSQL behind pgbouncer in transaction mode (Debian's pgbouncer
//! 1.18, started by the kit), the pool with `transaction_pooler(true)`, on
//! the ledger workload written with diesel's query builder (diesel-async
//! prepares each such statement by name, and caches it unless told not to).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_txn::{db_txn, AsyncPool, AsyncPoolBuilder};
use db_txn_tests::{Pgbouncer, Postgres};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::ledger::{Ledger, LedgerError, ACCOUNTS};
use crate::AsyncServer;

diesel::table! {
    ops (op_id) {
        op_id -> Varchar,
        src -> Integer,
        dst -> Integer,
        amount -> BigInt,
    }
}

diesel::table! {
    accounts (id) {
        id -> Integer,
        balance -> BigInt,
    }
}

/// The ledger's transfer through the query builder; `mid` runs after the
/// ledger row, once per attempt. Returns the receiver's balance.
#[db_txn(pool = pool)]
pub async fn transfer_dsl(
    conn: &mut AsyncPgConnection,
    pool: &AsyncPool<AsyncPgConnection>,
    op: &str,
    from: i32,
    to: i32,
    mid: &(dyn Fn() + Sync),
) -> Result<i64, LedgerError> {
    diesel::insert_into(ops::table)
        .values((
            ops::op_id.eq(op),
            ops::src.eq(from),
            ops::dst.eq(to),
            ops::amount.eq(7i64),
        ))
        .execute(conn)
        .await?;
    mid();
    diesel::update(accounts::table.find(from))
        .set(accounts::balance.eq(accounts::balance - 7i64))
        .execute(conn)
        .await?;
    diesel::update(accounts::table.find(to))
        .set(accounts::balance.eq(accounts::balance + 7i64))
        .execute(conn)
        .await?;
    Ok(accounts::table
        .find(to)
        .select(accounts::balance)
        .first(conn)
        .await?)
}

/// A ledger on `db` whose pool goes through `bouncer`, with
/// `transaction_pooler(true)` unless `configure` says otherwise.
async fn ledger<'s>(
    db: &'s Postgres,
    bouncer: &Pgbouncer,
    name: &str,
    configure: impl FnOnce(AsyncPoolBuilder<AsyncPgConnection>) -> AsyncPoolBuilder<AsyncPgConnection>,
) -> Ledger<'s, Postgres> {
    let url = bouncer.url_for(&format!("{}_async_{name}", Postgres::NAME));
    Ledger::new(db, name, async move |_| {
        let builder = AsyncPool::builder(url)
            .max_size(8)
            .checkout_timeout(Duration::from_secs(10))
            .transaction_pooler(true);
        configure(builder).build().await.expect("pool")
    })
    .await
}

/// `n` transfers from `tasks` tasks; the ops that succeeded and the errors.
async fn run(
    pool: &AsyncPool<AsyncPgConnection>,
    prefix: &str,
    tasks: u64,
    n: u64,
) -> (Vec<String>, Vec<String>) {
    let next = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..tasks {
        let (pool, next, results) = (pool.clone(), next.clone(), results.clone());
        let prefix = prefix.to_owned();
        set.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let op = format!("{prefix}-{i}");
                let from = (i % ACCOUNTS as u64) as i32;
                let to = ((i + 1) % ACCOUNTS as u64) as i32;
                let r = transfer_dsl(&pool, &op, from, to, &|| {}).await;
                let mut results = results.lock().unwrap();
                match r {
                    Ok(_) => results.0.push(op),
                    Err(e) => results.1.push(format!("{op}: {e:?}")),
                }
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.expect("a transfer task");
    }
    let results = std::mem::take(&mut *results.lock().unwrap());
    results
}

/// pgbouncer's clients of the ledger's database.
fn clients(l: &Ledger<'_, Postgres>, bouncer: &Pgbouncer) -> i64 {
    bouncer
        .console("SHOW CLIENTS")
        .lines()
        .filter(|line| line.split('|').nth(2) == Some(l.database.as_str()))
        .count() as i64
}

/// Every connection of the pool idle, and pgbouncer's clients of the
/// database are the pool's.
async fn assert_no_leak_behind(l: &Ledger<'_, Postgres>, bouncer: &Pgbouncer) {
    l.assert_no_leak_with(|| clients(l, bouncer)).await;
}

fn bouncer(db: &Postgres, settings: &[(&str, &str)]) -> Pgbouncer {
    let mut all = vec![("default_pool_size", "2")];
    all.extend_from_slice(settings);
    Pgbouncer::start_with(db.port(), &all).unwrap_or_else(|e| panic!("{e}"))
}

/// `pgbouncer_calls_clean`: 200 calls from eight tasks through two server
/// connections, all clean, where the same pool without
/// `transaction_pooler` fails some.
pub async fn pgbouncer_calls_clean() {
    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let bouncer = bouncer(&db, &[]);
    let mut l = ledger(&db, &bouncer, "bouncer_clean", |b| b).await;
    let (done, errors) = run(&l.pool, "ok", 8, 200).await;
    assert!(errors.is_empty(), "{} errors: {:?}", errors.len(), errors);
    assert_eq!(done.len(), 200);
    l.done = done;
    let s = l.pool.stats();
    eprintln!("pgbouncer, pooler mode: {s:?}");
    // A statement mixed up by the pooler fails with an error (`prepared
    // statement "sN" does not exist`, as the control below shows), which is
    // not retried: `errors` above would hold it. A retry may only follow a
    // lost connection. CI saw one such loss once in this row: a call found
    // its connection closed (`Disconnect::Closed`; the watchdog had not cut
    // it), ran again and succeeded. Its cause was not found, and 8 runs here
    // did not show it again; it is not a mix-up, so it is not failed here.
    assert_eq!(
        s.retries, s.disconnects,
        "a retry without a lost connection: {s:?}"
    );

    // The control: the same workload with diesel-async's statement cache,
    // on a ledger of its own (a statement run under another's name could
    // leave it inconsistent).
    let control = ledger(&db, &bouncer, "bouncer_control", |b| {
        b.transaction_pooler(false)
    })
    .await;
    let (_, control_errors) = run(&control.pool, "cached", 8, 200).await;
    eprintln!(
        "pgbouncer, statement cache on: {} of 200 failed, e.g. {:?}",
        control_errors.len(),
        <[String]>::first(&control_errors)
    );
    assert!(
        !control_errors.is_empty(),
        "without transaction_pooler some calls fail: the check can fail"
    );
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer).await;
}

/// `pgbouncer_backend_terminated_mid_transaction`: the server ends the
/// server connection a transaction is using; the call runs again on a
/// fresh one.
pub async fn pgbouncer_backend_terminated_mid_transaction() {
    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let bouncer = bouncer(&db, &[]);
    let mut l = ledger(&db, &bouncer, "bouncer_kill", |b| b).await;
    let (done, errors) = run(&l.pool, "warm", 2, 4).await;
    assert!(errors.is_empty(), "{errors:?}");
    l.done = done;
    let fired = AtomicBool::new(false);
    let database = l.database.clone();
    transfer_dsl(&l.pool, "killed", 0, 1, &|| {
        if !fired.swap(true, Ordering::SeqCst) {
            db.kill_all(&database);
        }
    })
    .await
    .expect("ran again after the kill");
    l.done.push("killed".into());
    let s = l.pool.stats();
    eprintln!("pgbouncer, backend terminated: {s:?}");
    assert_eq!(s.retries, 1, "{s:?}");
    assert!(s.disconnects >= 1, "{s:?}");
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer).await;
}

/// `pgbouncer_server_restart`: the server restarts behind pgbouncer
/// between transactions; every call succeeds. pgbouncer runs with
/// `server_login_retry = 1` (15 s by default, longer than the pool's
/// checkout timeout).
pub async fn pgbouncer_server_restart() {
    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let bouncer = bouncer(&db, &[("server_login_retry", "1")]);
    let mut l = ledger(&db, &bouncer, "bouncer_restart", |b| b).await;
    let (done, errors) = run(&l.pool, "before", 4, 8).await;
    assert!(errors.is_empty(), "{errors:?}");
    l.done = done;
    db.restart();
    let (done, errors) = run(&l.pool, "after", 4, 40).await;
    assert!(errors.is_empty(), "{errors:?}");
    l.done.extend(done);
    eprintln!("pgbouncer, server restart: {:?}", l.pool.stats());
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer).await;
}

/// A client of `bouncer` outside the pool, connected whatever diesel-async's
/// set-up meets there.
async fn client(url: &str) -> AsyncPgConnection {
    use diesel_async::AsyncConnection;
    let mut last = None;
    for _ in 0..20 {
        match AsyncPgConnection::establish(url).await {
            Ok(conn) => return conn,
            Err(e) => last = Some(e),
        }
    }
    panic!("no client connection through pgbouncer: {last:?}")
}

/// What diesel-async leaves through pgbouncer 1.18 and `transaction_pooler`
/// cannot lift: its set-up of a new connection prepares two statements
/// outside any transaction, and the one that closes them may reach another
/// server session, so a statement named `s<N>` stays on a server session.
/// Another process (or this program restarted) names its statements `s0`,
/// `s1`, ... too: a call that prepares a name left on the session it runs
/// on fails with `prepared statement "s<N>" already exists` (nothing of it
/// applied; the pool keeps working). Planted here as such leftovers, every
/// seventh name up to `s4999` on both server sessions.
pub async fn pgbouncer_statement_names_left_by_another_process() {
    use diesel_async::SimpleAsyncConnection;
    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let bouncer = bouncer(&db, &[]);
    let mut l = ledger(&db, &bouncer, "bouncer_names", |b| b).await;
    let url = bouncer.url_for(&l.database);
    // Two transactions at once hold both server sessions.
    let (mut a, mut b) = (client(&url).await, client(&url).await);
    let left: String = (0..5000)
        .step_by(7)
        .map(|n| format!("PREPARE s{n} AS SELECT 1; "))
        .collect();
    for conn in [&mut a, &mut b] {
        conn.batch_execute("BEGIN; DEALLOCATE ALL")
            .await
            .expect("BEGIN");
    }
    for conn in [&mut a, &mut b] {
        conn.batch_execute(&left).await.expect("the leftovers");
        conn.batch_execute("COMMIT").await.expect("COMMIT");
    }
    drop((a, b));
    let (done, errors) = run(&l.pool, "named", 8, 200).await;
    eprintln!(
        "pgbouncer, names left by another process: {} of 200 failed, e.g. {:?}",
        errors.len(),
        <[String]>::first(&errors)
    );
    assert!(!errors.is_empty(), "the leftovers are in the way");
    for e in &errors {
        assert!(e.contains("already exists"), "{e}");
    }
    assert_eq!(done.len() + errors.len(), 200);
    l.done = done;
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer).await;
}

/// `resolve_commit` through pgbouncer (the fault proxy between the pool and
/// pgbouncer): a COMMIT whose link dies after it reached pgbouncer is found
/// committed (the body ran once), one that never reached it is found not
/// committed (the body ran again); the questions run on a fresh connection
/// through the pooler, in a transaction of their own.
pub async fn pgbouncer_lost_commit_resolved() {
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicU32;

    use crate::resolved::{counting, resolutions};

    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let bouncer = bouncer(&db, &[]);
    let proxy =
        db_txn_tests::ProxyProcess::start(SocketAddr::from(([127, 0, 0, 1], bouncer.port())))
            .expect("proxy process");
    let name = "bouncer_resolve";
    let url = db.url_via_port(&format!("{}_async_{name}", Postgres::NAME), proxy.port());
    let mut l = Ledger::new(&db, name, async move |_| {
        AsyncPool::builder(url)
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10))
            .transaction_pooler(true)
            .resolve_commit(true)
            .build()
            .await
            .expect("pool")
    })
    .await;
    l.transfer().await;
    proxy.cut_after_commit();
    let runs = AtomicU32::new(0);
    l.transfer_with(&counting(&runs)).await;
    assert!(!proxy.commit_fault_pending(), "the COMMIT was cut");
    assert_eq!(
        AtomicU32::load(&runs, Ordering::SeqCst),
        1,
        "the body ran once"
    );
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (1, 0, 0, 0), "{s:?}");
    proxy.drop_commit();
    let runs = AtomicU32::new(0);
    l.transfer_with(&counting(&runs)).await;
    assert!(!proxy.commit_fault_pending(), "the COMMIT was dropped");
    assert_eq!(
        AtomicU32::load(&runs, Ordering::SeqCst),
        2,
        "the body ran again"
    );
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (1, 1, 0, 1), "{s:?}");
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer).await;
}

/// `pgbouncer_server_down_is_bounded`: the server is down behind pgbouncer,
/// which would hold a call for its `query_wait_timeout` (120 s): the call
/// ends with an error bounded by the pool's own settings (liveness check
/// after 1 s, probe timeout 1 s, checkout timeout 2 s), nothing
/// half-applied; once the server is back, calls succeed.
pub async fn pgbouncer_server_down_is_bounded() {
    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    // pgbouncer waits server_login_retry (15 s) before it tries a server
    // that refused it again: shorter here, for the calls after the restart.
    let bouncer = bouncer(&db, &[("server_login_retry", "1")]);
    let (check, probe, checkout) = (
        Duration::from_secs(1),
        Duration::from_secs(1),
        Duration::from_secs(2),
    );
    let mut l = ledger(&db, &bouncer, "bouncer_down", |b| {
        b.max_size(2)
            .checkout_timeout(checkout)
            .liveness_check_after(Some(check))
            .liveness_probe_timeout(probe)
    })
    .await;
    let (done, errors) = run(&l.pool, "before", 1, 3).await;
    assert!(errors.is_empty(), "{errors:?}");
    l.done = done;
    db.stop();
    let started = Instant::now();
    let r = transfer_dsl(&l.pool, "down", 0, 1, &|| {}).await;
    let took = started.elapsed();
    eprintln!("pgbouncer, server down: {r:?} after {took:?}");
    assert!(
        matches!(
            r,
            Err(LedgerError::Txn(
                db_txn::Error::Disconnected { .. } | db_txn::Error::Checkout { .. }
            ))
        ),
        "{r:?}"
    );
    // Two attempts, each cut by the probe, then at most one checkout; plus
    // the watchdog's ticks and grace. pgbouncer alone: 120 s.
    let bound = (check + probe + Duration::from_secs(1)) * 2 + checkout + Duration::from_secs(3);
    assert!(
        took < bound,
        "bounded by the pool's settings: {took:?} >= {bound:?}"
    );
    db.start_again();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (done, errors) = run(&l.pool, "after", 1, 3).await;
    assert!(errors.is_empty(), "{errors:?}");
    l.done.extend(done);
    assert_eq!(l.times_applied("down"), 0, "nothing half-applied");
    l.assert_consistent(0);
    // The pool's connections, plus the liveness probe's one if it is still
    // waiting in pgbouncer.
    let mut last = String::new();
    let settled = crate::server::eventually(Duration::from_secs(10), || {
        let s = l.pool.stats();
        let extra = clients(&l, &bouncer) - i64::from(s.connections);
        last = format!("{extra} pgbouncer clients beyond the pool's, pool {s:?}");
        s.connections == s.idle_connections && (extra == 0 || extra == 1)
    })
    .await;
    assert!(settled, "leak: {last}");
}
