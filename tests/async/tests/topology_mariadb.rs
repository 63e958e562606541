//! Failover, demotion and a COMMIT refused as read-only on real MariaDB
//! servers started by the kit (a primary with a GTID replica, and a fault
//! proxy in its own process as the moving address), through the async form
//! with the pool's default settings (see `src/topology.rs`), and the
//! read-replica rows (see `src/replicas.rs`). Each test starts its own
//! servers.

use db_txn_async_tests::{replicas, topology};
use db_txn_tests::MariaDb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_load() {
    db_txn_async_tests::logs();
    topology::failover_under_load::<MariaDb>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demoted_with_idle_connections() {
    db_txn_async_tests::logs();
    topology::demoted_with_idle_connections::<MariaDb>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_at_commit() {
    db_txn_async_tests::logs();
    topology::read_only_at_commit::<MariaDb>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_routing() {
    db_txn_async_tests::logs();
    replicas::replica_routing::<MariaDb>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_down_falls_back() {
    db_txn_async_tests::logs();
    replicas::replica_down_falls_back::<MariaDb>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_lag_read_your_writes() {
    db_txn_async_tests::logs();
    replicas::replica_lag_read_your_writes::<MariaDb>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_promoted_is_noticed() {
    db_txn_async_tests::logs();
    replicas::replica_promoted_is_noticed::<MariaDb>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_statement_after_failover() {
    db_txn_async_tests::logs();
    topology::long_statement_after_failover::<MariaDb>().await;
}
