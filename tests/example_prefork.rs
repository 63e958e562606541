//! `examples/prefork`: workers forked after the pool was built and used
//! serve through the inherited pool on connections of their own; the
//! master's connection survives them, unchanged.
//!
//! One test in this binary, so that no other test thread runs when it forks.
#![cfg(feature = "mysql")]

#[path = "../examples/prefork.rs"]
#[allow(dead_code)] // `main` is the example's own
mod example;

use std::time::Duration;

use db_txn_tests::MariaDb;

const WORKERS: i64 = 3;
const REQUESTS: i64 = 4;

#[test]
fn forked_workers_never_touch_the_masters_connection() {
    let db = MariaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let url = db.create_database("prefork");
    let pool = example::setup(&url).expect("setup");

    let report = example::prefork(WORKERS, REQUESTS).expect("the master's calls");

    assert_eq!(report.workers.len(), WORKERS as usize);
    for w in &report.workers {
        assert_eq!(
            w.exit_code,
            Some(example::EXIT_OK),
            "worker {} (1: a call failed, 2: it used the master's connection): {w:?}",
            w.number
        );
        assert_eq!(
            w.served, REQUESTS,
            "worker {}'s requests are in the database",
            w.number
        );
    }
    let (before, after) = report.parent_connection;
    assert_eq!(
        before, after,
        "the master kept its connection across the fork"
    );
    let (s0, s1) = report.parent_stats;
    assert_eq!(
        s1.opened, s0.opened,
        "the master opened no connection: {s1:?}"
    );
    assert_eq!((s1.disconnects, s1.retries), (0, 0), "{s1:?}");
    assert!(
        report.problems(REQUESTS).is_empty(),
        "{:?}",
        report.problems(REQUESTS)
    );

    // No worker used the master's connection for a request...
    assert_eq!(
        db.query_i64_in(
            "prefork",
            &format!("SELECT COUNT(*) FROM prefork_requests WHERE connection_id = {before}")
        ),
        0
    );
    // ...each had one of its own...
    assert_eq!(
        db.query_i64_in(
            "prefork",
            "SELECT COUNT(DISTINCT connection_id) FROM prefork_requests"
        ),
        WORKERS
    );
    // ...and those are gone with the workers; the master's remain.
    let s = pool.stats();
    let open = i64::from(s.connections);
    assert_eq!(
        db.wait_connection_count("prefork", open, Duration::from_secs(10)),
        open,
        "server-side connections vs the master's pool: {s:?}"
    );
    assert!(db.connection_ids("prefork").contains(&before));
}
