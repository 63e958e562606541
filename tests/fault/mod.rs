//! The fault matrix, written once for both servers: each `pub fn` here is a
//! test body that `tests/faults_mariadb.rs` and `tests/faults_postgres.rs`
//! run against a real server started by the kit.
//!
//! Every case runs a ledger workload (transfers with unique operation ids
//! between accounts whose balances must match the ledger) and asserts: no
//! operation lost, none applied twice, no error reaching the caller for a
//! fault before COMMIT, no connection leaked (the pool back to idle and the
//! server's own count of connections equal to the pool's), every call bounded.
#![allow(dead_code)]

pub mod ledger;
pub mod matrix;
#[cfg(feature = "postgres")]
pub mod pooler;
pub mod replicated;
pub mod server;
pub mod silent;
pub mod topology;

pub use server::TestServer;
