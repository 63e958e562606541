//! Failover, demotion, read replicas and a pooler on real PostgreSQL servers
//! started by the kit: a primary with a streaming standby, and pgbouncer (see
//! `tests/fault/topology.rs`, `tests/fault/pooler.rs`). Each test starts its
//! own servers.
#![cfg(feature = "postgres")]

mod fault;

use db_txn_tests::Postgres;
use fault::{pooler, topology};

#[test]
fn failover_under_load() {
    topology::failover_under_load::<Postgres>();
}

#[test]
fn demoted_with_idle_connections() {
    topology::demoted_with_idle_connections::<Postgres>();
}

#[test]
fn replica_routing() {
    topology::replica_routing::<Postgres>();
}

#[test]
fn replica_down_falls_back() {
    topology::replica_down_falls_back::<Postgres>();
}

#[test]
fn replica_lag_read_your_writes() {
    topology::replica_lag_read_your_writes::<Postgres>();
}

#[test]
fn read_your_writes_at_a_wal_page_boundary() {
    topology::read_your_writes_at_a_wal_page_boundary();
}

#[test]
fn replica_promoted_is_noticed() {
    topology::replica_promoted_is_noticed::<Postgres>();
}

#[test]
fn standby_recovery_conflict_is_retried() {
    topology::standby_recovery_conflict_is_retried();
}

#[test]
fn pgbouncer_calls_clean() {
    pooler::pgbouncer_calls_clean();
}

#[test]
fn pgbouncer_backend_terminated_mid_transaction() {
    pooler::pgbouncer_backend_terminated_mid_transaction();
}

#[test]
fn pgbouncer_server_restart() {
    pooler::pgbouncer_server_restart();
}

#[test]
fn pgbouncer_server_down_is_bounded() {
    pooler::pgbouncer_server_down_is_bounded();
}

#[test]
fn long_statement_after_failover() {
    topology::long_statement_after_failover::<Postgres>();
}
