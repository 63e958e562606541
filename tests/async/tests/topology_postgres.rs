//! Failover and demotion on real PostgreSQL servers started by the kit (a
//! primary and its streaming standby), through the async form with the
//! pool's default settings (see `src/topology.rs`), the read-replica rows
//! (see `src/replicas.rs`), and the pgbouncer rows
//! with `transaction_pooler(true)` (see `src/pooler.rs`). Each test starts
//! its own servers.

use db_txn_async_tests::{pooler, replicas, topology};
use db_txn_tests::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load() {
    db_txn_async_tests::logs();
    topology::failover_under_load::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demoted_with_idle_connections() {
    db_txn_async_tests::logs();
    topology::demoted_with_idle_connections::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_routing() {
    db_txn_async_tests::logs();
    replicas::replica_routing::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_down_falls_back() {
    db_txn_async_tests::logs();
    replicas::replica_down_falls_back::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_lag_read_your_writes() {
    db_txn_async_tests::logs();
    replicas::replica_lag_read_your_writes::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_your_writes_at_a_wal_page_boundary() {
    db_txn_async_tests::logs();
    replicas::read_your_writes_at_a_wal_page_boundary().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_promoted_is_noticed() {
    db_txn_async_tests::logs();
    replicas::replica_promoted_is_noticed::<Postgres>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_recovery_conflict_is_retried() {
    db_txn_async_tests::logs();
    replicas::standby_recovery_conflict_is_retried().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_calls_clean() {
    db_txn_async_tests::logs();
    pooler::pgbouncer_calls_clean().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_backend_terminated_mid_transaction() {
    db_txn_async_tests::logs();
    pooler::pgbouncer_backend_terminated_mid_transaction().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_server_restart() {
    db_txn_async_tests::logs();
    pooler::pgbouncer_server_restart().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbouncer_server_down_is_bounded() {
    db_txn_async_tests::logs();
    pooler::pgbouncer_server_down_is_bounded().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_statement_after_failover() {
    db_txn_async_tests::logs();
    topology::long_statement_after_failover::<Postgres>().await;
}
