//! `resolve_commit` on an async pool behind pgbouncer in transaction mode
//! (see `src/pooler.rs`).

use db_txn_async_tests::pooler;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_lost_commit_resolved() {
    db_txn_async_tests::logs();
    pooler::pgbouncer_lost_commit_resolved().await;
}
