//! What the async tests share: the kit's servers seen through diesel-async
//! ([`AsyncServer`]), the ledger workload on the async form ([`ledger`]),
//! the fault matrix ([`matrix`] and [`resolved`], the rows of
//! `tests/fault/matrix.rs`; [`silent`], those of `tests/fault/silent.rs`)
//! and its failover and demotion rows
//! ([`topology`], on the servers of [`replicated`], as
//! `tests/fault/topology.rs`) and read-replica rows ([`replicas`]), and its
//! pgbouncer rows ([`pooler`], as `tests/fault/pooler.rs`).

pub mod cancel;
pub mod ledger;
pub mod matrix;
pub mod pooler;
pub mod replicas;
pub mod replicated;
pub mod resolved;
pub mod server;
pub mod silent;
pub mod topology;

pub use server::AsyncServer;

/// Logs of the tests (`RUST_LOG`-free: `DB_TXN_LOG=debug` turns db_txn's on).
pub fn logs() {
    use tracing_subscriber::fmt;
    let level = match std::env::var("DB_TXN_LOG").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("info") => tracing::Level::INFO,
        _ => tracing::Level::WARN,
    };
    let _ = fmt().with_max_level(level).with_test_writer().try_init();
}
