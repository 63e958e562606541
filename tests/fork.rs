//! A process forked after the pool was built (a prefork server) never uses
//! or closes its parent's connections: the child gets fresh ones, and the
//! parent's still work after the child used the pool and exited.
//!
//! One test, so that no other test thread is running when it forks.
#![cfg(all(feature = "mysql", feature = "postgres"))]

mod fault;

use std::time::Duration;

use fault::ledger::{transfer, Ledger};
use fault::TestServer;

fn fork_keeps_the_parents_connections<S: TestServer>(server: &S) {
    let mut l = Ledger::new(server, "fork", |url| Ledger::<S>::pool(url, 2));
    l.transfer();
    let before = l.pool.stats();
    let parent_ids = server.connection_ids(&l.database);
    assert_eq!(parent_ids.len(), before.connections as usize);

    // SAFETY: the child only runs the pool's code and then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = (0..3).all(|i| transfer(&l.pool, &format!("child-{i}"), 1, 2, 3, &|| {}).is_ok());
        let fresh = l.pool.stats().opened >= 1;
        // Dropping the child's pool must not close the parent's connections either.
        drop(l);
        // SAFETY: leaves the child without running the test harness's exit path.
        unsafe { libc::_exit(if ok && fresh { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child failed to use the pool (status {status})"
    );

    // The parent's connections are still open on the server...
    let now = server.connection_ids(&l.database);
    for id in &parent_ids {
        assert!(
            now.contains(id),
            "the child closed the parent's connection {id}: {now:?}"
        );
    }
    // ...and serve the parent without a reconnect or a retry.
    l.transfer();
    let after = l.pool.stats();
    assert_eq!(after.opened, before.opened, "{after:?}");
    assert_eq!((after.retries, after.disconnects), (0, 0), "{after:?}");
    for i in 0..3 {
        assert_eq!(l.times_applied(&format!("child-{i}")), 1);
    }
    l.assert_consistent(3);
    // The child's connections are gone; the parent's remain.
    assert_eq!(
        server.wait_connection_count(
            &l.database,
            i64::from(after.connections),
            Duration::from_secs(10)
        ),
        i64::from(after.connections)
    );
}

#[test]
fn fork_keeps_the_parents_connections_on_both_servers() {
    fork_keeps_the_parents_connections(db_txn_tests::MariaDb::shared());
    fork_keeps_the_parents_connections(db_txn_tests::Postgres::shared());
}
