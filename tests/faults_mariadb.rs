//! The fault matrix on a real MariaDB started by the kit (see `tests/fault/`).
//! Faults that disrupt the whole server (restart, stop, freeze) get a server
//! of their own; the others share one, each in its own database.
#![cfg(feature = "mysql")]

mod fault;

use db_txn_tests::MariaDb;
use fault::{matrix, silent};

fn own() -> MariaDb {
    MariaDb::start().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn idle_past_server_timeout() {
    matrix::idle_past_server_timeout(MariaDb::shared());
}

#[test]
fn kill_between_transactions() {
    matrix::kill_between_transactions(MariaDb::shared());
}

#[test]
fn kill_between_transactions_then_ping() {
    matrix::kill_between_transactions_then_ping(MariaDb::shared());
}

#[test]
fn kill_mid_transaction() {
    matrix::kill_mid_transaction(MariaDb::shared());
}

#[test]
fn error_in_body() {
    matrix::error_in_body(MariaDb::shared());
}

#[test]
fn panic_in_body() {
    matrix::panic_in_body(MariaDb::shared());
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
fn waiting_calls_take_turns() {
    matrix::waiting_calls_take_turns(&own());
}

#[test]
fn frozen_server() {
    matrix::frozen_server(&own());
}

#[test]
fn bad_urls() {
    let s = MariaDb::shared();
    matrix::bad_urls(s, format!("mysql://root:wrong@127.0.0.1:{}/test", s.port()));
}

#[test]
fn proxy_cut() {
    matrix::proxy_cut(MariaDb::shared());
}

#[test]
fn proxy_blackhole_idle() {
    matrix::proxy_blackhole_idle(MariaDb::shared());
}

#[test]
fn cut_after_commit() {
    matrix::cut_after_commit(MariaDb::shared());
}

#[test]
fn statement_timeout() {
    matrix::statement_timeout(MariaDb::shared());
}

#[test]
fn deadlock_is_retried() {
    matrix::deadlock_is_retried(MariaDb::shared());
}

#[test]
fn recycled_before_server_idle_limit() {
    matrix::recycled_before_server_idle_limit(&own());
}

#[test]
fn blackholed_server_at_start() {
    let err = matrix::blackholed_server_at_start(MariaDb::shared(), "");
    assert!(matches!(err, db_txn::Error::Checkout { .. }), "{err:?}");
}

#[test]
fn frozen_server_with_stall_timeout() {
    matrix::frozen_server_with_stall_timeout(&own());
}

#[test]
fn cut_after_read_only_commit() {
    matrix::cut_after_read_only_commit(MariaDb::shared());
}

#[test]
fn recycled_when_on_connect_sets_the_limit() {
    matrix::recycled_when_on_connect_sets_the_limit(MariaDb::shared());
}

#[test]
fn blackholed_idle_link() {
    silent::blackholed_idle_link(MariaDb::shared());
}

#[test]
fn blackholed_mid_statement() {
    silent::blackholed_mid_statement(MariaDb::shared());
}

#[test]
fn blackholed_again_on_the_retry() {
    silent::blackholed_again_on_the_retry(MariaDb::shared());
}

#[test]
fn frozen_mid_statement() {
    silent::frozen_mid_statement(&own());
}

#[test]
fn frozen_behind_proxy() {
    silent::frozen_behind_proxy(&own());
}

#[test]
fn never_answering_server() {
    silent::never_answering_server(MariaDb::shared());
}

#[test]
fn long_statement_is_not_cut() {
    silent::long_statement_is_not_cut(MariaDb::shared());
}

#[test]
fn killed_just_before_commit() {
    silent::killed_just_before_commit(MariaDb::shared());
}

#[test]
fn retries_run_out() {
    silent::retries_run_out(MariaDb::shared());
}

#[test]
fn fork_inside_transaction_parent_rolls_back() {
    silent::fork_inside_transaction_parent_rolls_back(MariaDb::shared());
}

#[test]
fn fork_inside_transaction_parent_commits() {
    silent::fork_inside_transaction_parent_commits(MariaDb::shared());
}

#[test]
fn forked_child_connects_within_the_checkout_timeout() {
    silent::forked_child_connects_within_the_checkout_timeout(MariaDb::shared());
}

#[test]
fn cut_after_commit_resolved() {
    matrix::cut_after_commit_resolved(MariaDb::shared());
}

#[test]
fn dropped_commit_resolved() {
    matrix::dropped_commit_resolved(MariaDb::shared());
}

#[test]
fn crash_during_commit_resolved() {
    matrix::crash_during_commit_resolved(&own());
}

#[test]
fn unreachable_after_commit_is_unknown() {
    matrix::unreachable_after_commit_is_unknown(MariaDb::shared());
}

#[test]
fn held_commit_resolved() {
    matrix::held_commit_resolved(MariaDb::shared());
}
