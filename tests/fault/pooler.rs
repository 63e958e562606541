//! PostgreSQL behind pgbouncer in transaction mode (Debian's pgbouncer 1.18,
//! started by the kit): the pool with `transaction_pooler(true)`, on the
//! ledger workload written with diesel's query builder (prepared statements,
//! which diesel caches by name unless told not to).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use db_txn::{db_txn, Pool, PoolBuilder};
use db_txn_tests::{Pgbouncer, Postgres};
use diesel::prelude::*;
use diesel::PgConnection;

use super::ledger::{Ledger, LedgerError, ACCOUNTS};
use super::TestServer;

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
fn transfer_dsl(
    conn: &mut PgConnection,
    pool: &Pool<PgConnection>,
    op: &str,
    from: i32,
    to: i32,
    mid: &dyn Fn(),
) -> Result<i64, LedgerError> {
    diesel::insert_into(ops::table)
        .values((
            ops::op_id.eq(op),
            ops::src.eq(from),
            ops::dst.eq(to),
            ops::amount.eq(7i64),
        ))
        .execute(conn)?;
    mid();
    diesel::update(accounts::table.find(from))
        .set(accounts::balance.eq(accounts::balance - 7i64))
        .execute(conn)?;
    diesel::update(accounts::table.find(to))
        .set(accounts::balance.eq(accounts::balance + 7i64))
        .execute(conn)?;
    Ok(accounts::table
        .find(to)
        .select(accounts::balance)
        .first(conn)?)
}

/// A ledger on `db` whose pool goes through `bouncer`.
fn ledger<'s>(
    db: &'s Postgres,
    bouncer: &Pgbouncer,
    name: &str,
    configure: impl FnOnce(PoolBuilder<PgConnection>) -> PoolBuilder<PgConnection>,
) -> Ledger<'s, Postgres> {
    let database = format!("postgres_{name}");
    let url = bouncer.url_for(&database);
    Ledger::new(db, name, |_| {
        let builder = Pool::builder(url)
            .max_size(8)
            .checkout_timeout(Duration::from_secs(10))
            .transaction_pooler(true);
        configure(builder).build().expect("pool")
    })
}

/// `n` transfers from `threads` threads; the errors, in op order.
fn run(l: &Ledger<'_, Postgres>, prefix: &str, threads: u64, n: u64) -> (Vec<String>, Vec<String>) {
    let next = AtomicU64::new(0);
    let results = std::sync::Mutex::new((Vec::new(), Vec::new()));
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                let op = format!("{prefix}-{i}");
                let from = (i % ACCOUNTS as u64) as i32;
                let to = ((i + 1) % ACCOUNTS as u64) as i32;
                let r = transfer_dsl(&l.pool, &op, from, to, &|| {});
                let mut results = results.lock().unwrap();
                match r {
                    Ok(_) => results.0.push(op),
                    Err(e) => results.1.push(format!("{op}: {e:?}")),
                }
            });
        }
    });
    results.into_inner().unwrap()
}

/// Every connection of the pool idle, and pgbouncer's clients of the
/// database are the pool's (plus the liveness probe's one, if it ran).
fn assert_no_leak_behind(l: &Ledger<'_, Postgres>, bouncer: &Pgbouncer, probe: bool) {
    let clients = || {
        bouncer
            .console("SHOW CLIENTS")
            .lines()
            .filter(|line| line.split('|').nth(2) == Some(l.database.as_str()))
            .count() as i64
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = l.pool.stats();
        let extra = clients() - i64::from(s.connections);
        if s.connections == s.idle_connections && (extra == 0 || (probe && extra == 1)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "leak: {} pgbouncer clients, pool {s:?}",
            clients()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn bouncer(db: &Postgres, settings: &[(&str, &str)]) -> Pgbouncer {
    let mut all = vec![("default_pool_size", "2")];
    all.extend_from_slice(settings);
    Pgbouncer::start_with(db.port(), &all).unwrap_or_else(|e| panic!("{e}"))
}

/// pgbouncer in transaction mode, two server connections for eight client
/// connections: 200 calls from eight threads, all clean (no prepared
/// statement "does not exist" / "already exists"), where the same pool
/// without `transaction_pooler` fails some.
pub fn pgbouncer_calls_clean() {
    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let bouncer = bouncer(&db, &[]);
    let mut l = ledger(&db, &bouncer, "bouncer_clean", |b| b);
    let (done, errors) = run(&l, "ok", 8, 200);
    assert!(errors.is_empty(), "{} errors: {:?}", errors.len(), errors);
    assert_eq!(done.len(), 200);
    l.done = done;
    let s = l.pool.stats();
    eprintln!("pgbouncer, pooler mode: {s:?}");
    assert_eq!(s.retries, 0, "{s:?}");

    // The control: the same workload with diesel's statement cache, on a
    // ledger of its own (a statement run under another's name could leave
    // it inconsistent).
    let control = ledger(&db, &bouncer, "bouncer_control", |b| {
        b.transaction_pooler(false)
    });
    let (_, control_errors) = run(&control, "cached", 8, 200);
    eprintln!(
        "pgbouncer, statement cache on: {} of 200 failed, e.g. {:?}",
        control_errors.len(),
        control_errors.first()
    );
    assert!(
        !control_errors.is_empty(),
        "without transaction_pooler some calls fail: the check can fail"
    );
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer, false);
}

/// The server ends the server connection a transaction is using
/// (`pg_terminate_backend` behind pgbouncer): pgbouncer closes the client's
/// connection, the call runs again on a fresh one.
pub fn pgbouncer_backend_terminated_mid_transaction() {
    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let bouncer = bouncer(&db, &[]);
    let mut l = ledger(&db, &bouncer, "bouncer_kill", |b| b);
    let (done, _) = run(&l, "warm", 2, 4);
    l.done = done;
    let fired = AtomicBool::new(false);
    let database = l.database.clone();
    transfer_dsl(&l.pool, "killed", 0, 1, &|| {
        if !fired.swap(true, Ordering::SeqCst) {
            db.kill_all(&database);
        }
    })
    .expect("ran again after the kill");
    l.done.push("killed".into());
    let s = l.pool.stats();
    eprintln!("pgbouncer, backend terminated: {s:?}");
    assert_eq!(s.retries, 1, "{s:?}");
    assert!(s.disconnects >= 1, "{s:?}");
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer, false);
}

/// The server restarts behind pgbouncer between transactions: every call
/// succeeds (pgbouncer replaces its server connections, or the call runs
/// again). pgbouncer runs with `server_login_retry = 1`: after a failed
/// login to a server that is restarting it refuses clients for that long
/// (15 s by default, longer than the pool's checkout timeout).
pub fn pgbouncer_server_restart() {
    let db = Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let bouncer = bouncer(&db, &[("server_login_retry", "1")]);
    let mut l = ledger(&db, &bouncer, "bouncer_restart", |b| b);
    let (done, _) = run(&l, "before", 4, 8);
    l.done = done;
    db.restart();
    let (done, errors) = run(&l, "after", 4, 40);
    assert!(errors.is_empty(), "{errors:?}");
    l.done.extend(done);
    eprintln!("pgbouncer, server restart: {:?}", l.pool.stats());
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer, false);
}

/// The server is down behind pgbouncer, which would hold a call for its
/// `query_wait_timeout` (120 s): the call ends with an error bounded by the
/// pool's own settings (liveness check after 1 s, probe timeout 1 s,
/// checkout timeout 2 s), nothing half-applied; once the server is back,
/// calls succeed.
pub fn pgbouncer_server_down_is_bounded() {
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
    });
    let (done, _) = run(&l, "before", 1, 3);
    l.done = done;
    db.stop();
    let started = Instant::now();
    let r = transfer_dsl(&l.pool, "down", 0, 1, &|| {});
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
    thread::sleep(Duration::from_secs(1));
    let (done, errors) = run(&l, "after", 1, 3);
    assert!(errors.is_empty(), "{errors:?}");
    l.done.extend(done);
    assert_eq!(l.times_applied("down"), 0, "nothing half-applied");
    l.assert_consistent(0);
    assert_no_leak_behind(&l, &bouncer, true);
}
