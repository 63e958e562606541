//! The fault matrix on a real PostgreSQL started by the kit (see `tests/fault/`).
//! Faults that disrupt the whole server (restart, stop, freeze) get a server
//! of their own; the others share one, each in its own database.
#![cfg(feature = "postgres")]

mod fault;

use db_txn_tests::Postgres;
use fault::{matrix, silent};

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
fn waiting_calls_take_turns() {
    matrix::waiting_calls_take_turns(&own());
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
    assert!(matches!(err, db_txn::Error::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("timeout"), "{err}");
}

#[test]
fn frozen_server_with_stall_timeout() {
    matrix::frozen_server_with_stall_timeout(&own());
}

/// libpq applies the URL's `keepalives_idle` and `tcp_user_timeout` to the
/// connection's socket: read them back with getsockopt on the socket whose
/// ports the server reports for this session.
#[test]
fn url_keepalive_and_user_timeout_reach_the_socket() {
    use diesel::prelude::*;
    use std::os::fd::RawFd;

    #[derive(QueryableByName)]
    struct Ports {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        client: i32,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        server: i32,
    }
    fn port(fd: RawFd, peer: bool) -> Option<u16> {
        // SAFETY: zeroed sockaddr_in is valid; the calls write at most `len` bytes.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let p = (&mut addr as *mut libc::sockaddr_in).cast();
        // SAFETY: as above.
        let rc = unsafe {
            if peer {
                libc::getpeername(fd, p, &mut len)
            } else {
                libc::getsockname(fd, p, &mut len)
            }
        };
        (rc == 0 && i32::from(addr.sin_family) == libc::AF_INET)
            .then(|| u16::from_be(addr.sin_port))
    }
    fn opt(fd: RawFd, name: libc::c_int) -> i32 {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads one int into `v`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        v
    }

    let server = Postgres::shared();
    let url = format!("{}?keepalives_idle=7&tcp_user_timeout=4321", server.url());
    let pool = db_txn::Pool::<diesel::PgConnection>::new(url).unwrap();
    let mut conn = pool.get().unwrap();
    let p: Ports =
        diesel::sql_query("SELECT inet_client_port() AS client, inet_server_port() AS server")
            .get_result(&mut *conn)
            .unwrap();
    let fd = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .find(|&fd| {
            port(fd, false) == u16::try_from(p.client).ok()
                && port(fd, true) == u16::try_from(p.server).ok()
        })
        .expect("the connection's socket");
    assert_eq!(opt(fd, libc::TCP_KEEPIDLE), 7);
    assert_eq!(opt(fd, libc::TCP_USER_TIMEOUT), 4321);
}

#[test]
fn cut_after_read_only_commit() {
    matrix::cut_after_read_only_commit(Postgres::shared());
}

#[test]
fn blackholed_idle_link() {
    silent::blackholed_idle_link(Postgres::shared());
}

#[test]
fn blackholed_mid_statement() {
    silent::blackholed_mid_statement(Postgres::shared());
}

#[test]
fn blackholed_again_on_the_retry() {
    silent::blackholed_again_on_the_retry(Postgres::shared());
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
    silent::never_answering_server(Postgres::shared());
}

#[test]
fn long_statement_is_not_cut() {
    silent::long_statement_is_not_cut(Postgres::shared());
}

#[test]
fn killed_just_before_commit() {
    silent::killed_just_before_commit(Postgres::shared());
}

#[test]
fn retries_run_out() {
    silent::retries_run_out(Postgres::shared());
}

#[test]
fn fork_inside_transaction_parent_rolls_back() {
    silent::fork_inside_transaction_parent_rolls_back(Postgres::shared());
}

#[test]
fn fork_inside_transaction_parent_commits() {
    silent::fork_inside_transaction_parent_commits(Postgres::shared());
}

#[test]
fn forked_child_connects_within_the_checkout_timeout() {
    silent::forked_child_connects_within_the_checkout_timeout(Postgres::shared());
}

#[test]
fn cut_after_commit_resolved() {
    matrix::cut_after_commit_resolved(Postgres::shared());
}

#[test]
fn dropped_commit_resolved() {
    matrix::dropped_commit_resolved(Postgres::shared());
}

#[test]
fn crash_during_commit_resolved() {
    matrix::crash_during_commit_resolved(&own());
}

#[test]
fn unreachable_after_commit_is_unknown() {
    matrix::unreachable_after_commit_is_unknown(Postgres::shared());
}

#[test]
fn held_commit_resolved() {
    matrix::held_commit_resolved(Postgres::shared());
}
