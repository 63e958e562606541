//! A limitation of diesel-async through pgbouncer 1.18 that
//! `AsyncPoolBuilder::transaction_pooler` cannot lift: statement names
//! another process left on pgbouncer's server sessions (see
//! `src/pooler.rs`).

use db_txn_async_tests::pooler;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_statement_names_left_by_another_process() {
    db_txn_async_tests::logs();
    pooler::pgbouncer_statement_names_left_by_another_process().await;
}
