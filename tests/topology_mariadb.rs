//! Failover, demotion and read replicas on real MariaDB servers started by
//! the kit: a primary with a GTID replica, and a fault proxy in its own
//! process as the moving address (see `tests/fault/topology.rs`). Each test
//! starts its own servers.
#![cfg(feature = "mysql")]

mod fault;

use db_txn_tests::MariaDb;
use fault::topology;

#[test]
fn failover_under_load() {
    topology::failover_under_load::<MariaDb>();
}

#[test]
fn demoted_with_idle_connections() {
    topology::demoted_with_idle_connections::<MariaDb>();
}

#[test]
fn read_only_at_commit() {
    topology::read_only_at_commit::<MariaDb>();
}

#[test]
fn replica_routing() {
    topology::replica_routing::<MariaDb>();
}

#[test]
fn replica_down_falls_back() {
    topology::replica_down_falls_back::<MariaDb>();
}

#[test]
fn replica_lag_read_your_writes() {
    topology::replica_lag_read_your_writes::<MariaDb>();
}

#[test]
fn replica_promoted_is_noticed() {
    topology::replica_promoted_is_noticed::<MariaDb>();
}

#[test]
fn long_statement_after_failover() {
    topology::long_statement_after_failover::<MariaDb>();
}
