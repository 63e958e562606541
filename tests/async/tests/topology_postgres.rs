//! Failover and demotion on real PostgreSQL servers started by the kit (a
//! primary and its streaming standby), through the async form with the
//! pool's default settings (see `src/topology.rs`). Each test starts its
//! own servers.

use db_txn_async_tests::topology;
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
