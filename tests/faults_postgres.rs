//! The fault matrix on a real PostgreSQL started by the kit (see `tests/fault/`).
//! Faults that disrupt the whole server (restart, stop, freeze) get a server
//! of their own; the others share one, each in its own database.
#![cfg(feature = "postgres")]

mod fault;

use db_txn_tests::Postgres;
use fault::matrix;

fn own() -> Postgres {
    Postgres::start().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn idle_past_server_timeout() {
    matrix::idle_past_server_timeout(Postgres::shared());
}

#[test]
fn kill_between_transactions() {
    matrix::kill_between_transactions(Postgres::shared());
}

#[test]
fn kill_between_transactions_then_ping() {
    matrix::kill_between_transactions_then_ping(Postgres::shared());
}

#[test]
fn kill_mid_transaction() {
    matrix::kill_mid_transaction(Postgres::shared());
}

#[test]
fn error_in_body() {
    matrix::error_in_body(Postgres::shared());
}

#[test]
fn panic_in_body() {
    matrix::panic_in_body(Postgres::shared());
}

#[test]
fn server_restart() {
    matrix::server_restart(&own());
}

#[test]
fn server_down_then_back() {
    matrix::server_down_then_back(&own());
}

#[test]
fn frozen_server() {
    matrix::frozen_server(&own());
}

#[test]
fn bad_urls() {
    let s = Postgres::shared();
    matrix::bad_urls(s, format!("postgres://nobody@127.0.0.1:{}/test", s.port()));
}

#[test]
fn proxy_cut() {
    matrix::proxy_cut(Postgres::shared());
}

#[test]
fn proxy_blackhole_idle() {
    matrix::proxy_blackhole_idle(Postgres::shared());
}

#[test]
fn cut_after_commit() {
    matrix::cut_after_commit(Postgres::shared());
}

#[test]
fn statement_timeout() {
    matrix::statement_timeout(Postgres::shared());
}

#[test]
fn deadlock_is_retried() {
    matrix::deadlock_is_retried(Postgres::shared());
}

#[test]
fn blackholed_server_at_start() {
    // Without connect_timeout the pool's own bound applies...
    let err = matrix::blackholed_server_at_start(Postgres::shared(), "");
    assert!(matches!(err, db_txn::Error::Checkout { .. }), "{err:?}");
    // ...with it, libpq gives up by itself and says why.
    let err = matrix::blackholed_server_at_start(Postgres::shared(), "?connect_timeout=1");
    assert!(matches!(err, db_txn::Error::Connect(_)), "{err:?}");
    assert!(err.to_string().contains("timeout"), "{err}");
}

#[test]
fn frozen_server_with_stall_timeout() {
    matrix::frozen_server_with_stall_timeout(&own());
}
