//! The fault matrix on a real MariaDB started by the kit, through the
//! async form (see `src/matrix.rs`). Faults that disrupt the whole server
//! (restart, stop, freeze) get a server of their own; the others share one,
//! each in its own database.

use db_txn_async_tests::{matrix, resolved, silent};
use db_txn_tests::MariaDb;

fn own() -> MariaDb {
    MariaDb::start().unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_past_server_timeout() {
    db_txn_async_tests::logs();
    matrix::idle_past_server_timeout(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_transactions() {
    db_txn_async_tests::logs();
    matrix::kill_between_transactions(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_between_transactions_then_ping() {
    db_txn_async_tests::logs();
    matrix::kill_between_transactions_then_ping(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_transaction() {
    db_txn_async_tests::logs();
    matrix::kill_mid_transaction(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_in_body() {
    db_txn_async_tests::logs();
    matrix::error_in_body(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_in_body() {
    db_txn_async_tests::logs();
    matrix::panic_in_body(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_cut() {
    db_txn_async_tests::logs();
    matrix::proxy_cut(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_blackhole_idle() {
    db_txn_async_tests::logs();
    matrix::proxy_blackhole_idle(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_commit() {
    db_txn_async_tests::logs();
    matrix::cut_after_commit(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_commit_resolved() {
    db_txn_async_tests::logs();
    resolved::cut_after_commit_resolved(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_commit_resolved() {
    db_txn_async_tests::logs();
    resolved::dropped_commit_resolved(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_commit_resolved() {
    db_txn_async_tests::logs();
    resolved::crash_during_commit_resolved(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_after_commit_is_unknown() {
    db_txn_async_tests::logs();
    resolved::unreachable_after_commit_is_unknown(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_commit_resolved() {
    db_txn_async_tests::logs();
    resolved::held_commit_resolved(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout() {
    db_txn_async_tests::logs();
    matrix::statement_timeout(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlock_is_retried() {
    db_txn_async_tests::logs();
    matrix::deadlock_is_retried(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_after_read_only_commit() {
    db_txn_async_tests::logs();
    matrix::cut_after_read_only_commit(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_when_on_connect_sets_the_limit() {
    db_txn_async_tests::logs();
    matrix::recycled_when_on_connect_sets_the_limit(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_restart() {
    db_txn_async_tests::logs();
    matrix::server_restart(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_then_back() {
    db_txn_async_tests::logs();
    matrix::server_down_then_back(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_calls_take_turns() {
    db_txn_async_tests::logs();
    matrix::waiting_calls_take_turns(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server() {
    db_txn_async_tests::logs();
    matrix::frozen_server(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_with_stall_timeout() {
    db_txn_async_tests::logs();
    matrix::frozen_server_with_stall_timeout(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recycled_before_server_idle_limit() {
    matrix::recycled_before_server_idle_limit(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls() {
    let s = MariaDb::shared();
    matrix::bad_urls(
        s,
        format!(
            "mysql://root:wrong@127.0.0.1:{}/test?prefer_socket=false",
            s.port()
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_server_at_start() {
    let err = matrix::blackholed_server_at_start(MariaDb::shared(), "").await;
    assert!(matches!(err, db_txn::Error::Checkout { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_idle_link() {
    db_txn_async_tests::logs();
    silent::blackholed_idle_link(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_mid_statement() {
    db_txn_async_tests::logs();
    silent::blackholed_mid_statement(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_mid_statement() {
    db_txn_async_tests::logs();
    silent::frozen_mid_statement(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_behind_proxy() {
    db_txn_async_tests::logs();
    silent::frozen_behind_proxy(&own()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_answering_server() {
    db_txn_async_tests::logs();
    silent::never_answering_server(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_statement_is_not_cut() {
    db_txn_async_tests::logs();
    silent::long_statement_is_not_cut(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_just_before_commit() {
    db_txn_async_tests::logs();
    silent::killed_just_before_commit(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out() {
    db_txn_async_tests::logs();
    silent::retries_run_out(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_again_on_the_retry() {
    db_txn_async_tests::logs();
    silent::blackholed_again_on_the_retry(MariaDb::shared()).await;
}
