//! Chaos with `resolve_commit` on (issue 10): caller threads make ledger
//! transfers with unique operation ids while another thread kills random
//! connections of the pool (KILL / pg_terminate_backend) and restarts the
//! server (graceful and SIGKILL, in turn). No caller may see an error of any
//! kind, every acknowledged transfer must be in the ledger exactly once
//! (the operation id is the primary key: one applied twice would have made
//! its caller see a duplicate-key error), the balances must add up, and no
//! connection may be left behind.
//!
//! Each server runs for `DB_TXN_CHAOS_SECS` seconds (default 30, what CI
//! runs; set more for a longer local run, e.g. `DB_TXN_CHAOS_SECS=300`).
#![cfg(any(feature = "mysql", feature = "postgres"))]

mod fault;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use db_txn::{db_txn, Pool, TxnConnection};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use fault::ledger::{Ledger, LedgerError, ACCOUNTS, OPENING_BALANCE};
use fault::TestServer;

/// Caller threads (and pool size).
const WORKERS: usize = 4;

fn duration() -> Duration {
    let secs = std::env::var("DB_TXN_CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// A transfer that resolves its COMMIT if the connection is lost, and runs
/// again as often as the chaos needs. The balances are updated in id order,
/// so two transfers never deadlock.
#[db_txn(pool = pool, resolve_commit, retry = 20, retry_conflicts = 20)]
fn transfer<C: TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    op: &str,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', {from}, {to}, {amount})"
    ))?;
    let mut changes = [(from, -amount), (to, amount)];
    changes.sort();
    for (id, delta) in changes {
        conn.batch_execute(&format!(
            "UPDATE accounts SET balance = balance + ({delta}) WHERE id = {id}"
        ))?;
    }
    Ok(())
}

/// What the chaos thread did.
#[derive(Debug, Default)]
struct Chaos {
    kills: AtomicU64,
    restarts: AtomicU64,
    crashes: AtomicU64,
}

/// xorshift64, seeded per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn run<S: TestServer>(server: &S, kill_sql: fn(i64) -> String) {
    let mut l = Ledger::new(server, "chaos", |url| {
        Pool::builder(url)
            .max_size(WORKERS as u32)
            .checkout_timeout(Duration::from_secs(15))
            .commit_resolution_timeout(Duration::from_secs(15))
            .build()
            .expect("pool")
    });
    let killer_url = server.url_via_port("test", server.port());
    let length = duration();
    let stop = AtomicBool::new(false);
    let chaos = Chaos::default();
    let errors = Mutex::new(Vec::new());
    let started = Instant::now();
    let acked: Vec<Vec<String>> = thread::scope(|s| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (pool, stop, errors) = (&l.pool, &stop, &errors);
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
                    let mut done = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Relaxed) {
                        n += 1;
                        let op = format!("w{w}-{n}");
                        let from = (rng.next() % ACCOUNTS as u64) as i64;
                        let to =
                            (from + 1 + (rng.next() % (ACCOUNTS as u64 - 1)) as i64) % ACCOUNTS;
                        match transfer(pool, &op, from, to, 1 + (rng.next() % 9) as i64) {
                            Ok(()) => done.push(op),
                            Err(e) => errors
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("{op}: {e:?}")),
                        }
                    }
                    done
                })
            })
            .collect();
        s.spawn(|| {
            let mut rng = Rng(0xD1B5_4A32_D192_ED03);
            let mut next_restart = Instant::now() + Duration::from_secs(4);
            while started.elapsed() < length {
                thread::sleep(Duration::from_millis(20 + rng.next() % 100));
                if Instant::now() >= next_restart {
                    if chaos.restarts.load(Relaxed) % 2 == 0 {
                        server.restart();
                    } else {
                        server.crash();
                        server.start_again();
                        chaos.crashes.fetch_add(1, Relaxed);
                    }
                    chaos.restarts.fetch_add(1, Relaxed);
                    next_restart = Instant::now() + Duration::from_millis(3000 + rng.next() % 3000);
                    continue;
                }
                let ids = server.connection_ids(&l.database);
                if ids.is_empty() {
                    continue;
                }
                let id = ids[(rng.next() % ids.len() as u64) as usize];
                // The connection may be gone already: only count kills that worked.
                if let Ok(mut admin) = S::Conn::establish(&killer_url) {
                    if admin.batch_execute(&kill_sql(id)).is_ok() {
                        chaos.kills.fetch_add(1, Relaxed);
                    }
                }
            }
            stop.store(true, Relaxed);
        });
        workers
            .into_iter()
            .map(|w| w.join().expect("no panic in a caller thread"))
            .collect()
    });
    let took = started.elapsed();
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    l.done = acked.into_iter().flatten().collect();
    let s = l.pool.stats();
    eprintln!(
        "{} chaos, {took:.1?}: {} transfers acknowledged, {} errors; {} connections killed, {} \
         restarts ({} of them SIGKILL); pool: {} retries, {} disconnects, lost COMMITs: {} \
         committed, {} not committed, {} unknown",
        S::NAME,
        l.done.len(),
        errors.len(),
        chaos.kills.load(Relaxed),
        chaos.restarts.load(Relaxed),
        chaos.crashes.load(Relaxed),
        s.retries,
        s.disconnects,
        s.lost_commits_committed,
        s.lost_commits_aborted,
        s.commit_unknowns,
    );
    assert!(errors.is_empty(), "errors reached callers: {errors:#?}");
    assert!(
        chaos.kills.load(Relaxed) > 0 && chaos.restarts.load(Relaxed) > 0,
        "the chaos did something"
    );
    assert_eq!(s.commit_unknowns, 0, "{s:?}");
    // Every acknowledged transfer once, nothing else, balances as the ledger says.
    l.assert_consistent(0);
    let total = ACCOUNTS * OPENING_BALANCE;
    assert_eq!(
        l.count(&format!(
            "SELECT COUNT(*) FROM (SELECT SUM(balance) AS t FROM accounts) s WHERE s.t = {total}"
        )),
        1,
        "money was created or lost"
    );
    // The pool all idle, and on the server the pool's connections (plus
    // the liveness probe's own, if a statement ever stalled).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = l.pool.stats();
        let on_server = server.connection_count(&l.database);
        let pool = i64::from(s.connections);
        if s.connections == s.idle_connections && (pool..=pool + 1).contains(&on_server) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leak: {on_server} server-side connections, pool {s:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(feature = "mysql")]
#[test]
fn chaos_mariadb() {
    let server = db_txn_tests::MariaDb::start().unwrap_or_else(|e| panic!("{e}"));
    run(&server, |id| format!("KILL CONNECTION {id}"));
}

#[cfg(feature = "postgres")]
#[test]
fn chaos_postgres() {
    let server = db_txn_tests::Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    run(&server, |id| format!("SELECT pg_terminate_backend({id})"));
}
