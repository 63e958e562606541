//! A process forked after an async pool was built (a prefork server that
//! builds its pool too early): the child's calls on the inherited pool fail
//! with `Error::AsyncPoolForked` without touching it, dropping it in the
//! child sends nothing on the parent's connections, and the parent goes on
//! with the same connections. On MariaDB, whose client would QUIT the
//! parent's session from the child (and, dropping its sockets, take them out
//! of the epoll set that parent and child share).
//!
//! One test, so that no other test thread is running when it forks.

use std::time::Duration;

use db_txn_async_tests::ledger::{transfer, Ledger};
use db_txn_tests::MariaDb;

#[test]
fn a_child_never_touches_the_parents_async_pool() {
    let server = MariaDb::shared();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut l = runtime.block_on(Ledger::new(server, "fork", async |url| {
        Ledger::<MariaDb>::pool(url, 2).await
    }));
    runtime.block_on(l.transfer());
    let before = l.pool.stats();
    let parent_ids = server.connection_ids(&l.database);
    assert_eq!(parent_ids.len(), before.connections as usize);

    // SAFETY: the child only builds a runtime, calls into the pool, and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let child = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the child's runtime");
            let r = runtime.block_on(transfer(&l.pool, "child", 1, 2, 3, &|| {}));
            let refused = matches!(
                r,
                Err(db_txn_async_tests::ledger::LedgerError::Txn(
                    db_txn::Error::AsyncPoolForked { function: Some(_) }
                ))
            );
            let got = runtime.block_on(l.pool.get());
            let message = got.err().map(|e| e.to_string()).unwrap_or_default();
            // Dropping the inherited pool in the child must send nothing.
            drop(l);
            runtime.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
            refused && message.contains("build the pool")
        }));
        // SAFETY: leaves the child without running the test harness's exit path.
        unsafe { libc::_exit(if matches!(child, Ok(true)) { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the child did not get AsyncPoolForked (status {status})"
    );
    let now = server.connection_ids(&l.database);
    assert_eq!(now, parent_ids, "the child closed a parent's connection");
    // A child that dropped the inherited connections would also have taken
    // their sockets out of the parent's epoll set (shared across fork): the
    // parent's next call would then never hear back. Bounded, to fail.
    let next = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(20), l.transfer()).await });
    assert!(
        next.is_ok(),
        "the parent's call hangs after the child exited"
    );
    let after = l.pool.stats();
    assert_eq!(after.opened, before.opened, "{after:?}");
    assert_eq!((after.retries, after.disconnects), (0, 0), "{after:?}");
    assert_eq!(l.times_applied("child"), 0);
    l.assert_consistent(0);
}
