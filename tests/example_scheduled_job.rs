//! `examples/scheduled_job`: a periodic job idling past the server's
//! `wait_timeout` between runs, and a "web" part on another thread, through
//! one installed pool. Every run and every request must succeed,
//! and the counters must show how: connections retired before the server's
//! limit when the pool knows it, found dead by the checkout's ping when only
//! the session knows it, never a transaction started on a dead connection.
#![cfg(feature = "mysql")]

#[path = "../examples/scheduled_job.rs"]
#[allow(dead_code)] // `main` and the printing are the example's own
mod example;

use std::time::Duration;

use db_txn_tests::MariaDb;
use example::{Schedule, Summary};

/// Three runs, 2.4 s apart: before each run every connection has idled
/// about 2.2 s (the web request comes 0.24 s after a run), past the 1 s
/// `wait_timeout` of these servers.
const SCHEDULE: Schedule = Schedule {
    runs: 3,
    every: Duration::from_millis(2400),
};
const WAIT_TIMEOUT: u32 = 1;

fn run(db: &MariaDb, database: &str, session_wait_timeout: Option<u32>) -> Summary {
    let url = db.create_database(database);
    example::setup(&url, session_wait_timeout).expect("setup");
    let summary = example::run(SCHEDULE, &|_| {});
    for (i, r) in summary.runs.iter().enumerate() {
        assert!(r.is_ok(), "{database}: run {} failed: {r:?}", i + 1);
    }
    for (i, r) in summary.requests.iter().enumerate() {
        assert!(r.is_ok(), "{database}: web request {} failed: {r:?}", i + 1);
    }
    assert_eq!(summary.runs.len(), SCHEDULE.runs);
    assert_eq!(summary.requests.len(), SCHEDULE.runs - 1);
    // The work was done: the two seeded tokens and every registered one.
    let filled: usize = summary.runs.iter().flatten().sum();
    assert_eq!(
        filled,
        2 + summary.requests.len(),
        "{database}: tokens filled"
    );
    assert_eq!(example::unfilled().expect("unfilled"), 0);
    eprintln!("{database}: {:?}", summary.stats);
    summary
}

#[test]
fn a_job_idling_past_wait_timeout_never_fails() {
    let db = MariaDb::start().unwrap_or_else(|e| panic!("{e}"));

    // The server's own limit, read by the pool at connect: idle connections
    // are retired before the server drops them, none is found dead.
    db.exec(&format!("SET GLOBAL wait_timeout = {WAIT_TIMEOUT}"));
    let s = run(&db, "job_server_limit", None).stats;
    let later_runs = SCHEDULE.runs as u64 - 1;
    assert!(
        s.recycled >= later_runs,
        "an idle connection was retired before each later run: {s:?}"
    );
    assert_eq!(s.disconnects, 0, "no dead connection was touched: {s:?}");
    assert_eq!(s.retries, 0, "{s:?}");

    // A limit only the session knows (set by `on_connect`): the pool reads
    // `wait_timeout` after the hook, so it retires those connections too.
    db.exec("SET GLOBAL wait_timeout = 28800");
    let s = run(&db, "job_session_limit", Some(WAIT_TIMEOUT)).stats;
    assert!(
        s.recycled >= later_runs,
        "an idle connection was retired before each later run: {s:?}"
    );
    assert_eq!(s.disconnects, 0, "no dead connection was touched: {s:?}");
    assert_eq!(s.retries, 0, "{s:?}");
}
