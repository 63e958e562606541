//! The fault proxy's parts, shared by the in-process [`crate::Proxy`] and
//! the `db_txn_faultproxy` program ([`crate::ProxyProcess`]), which
//! compiles these same files (`main.rs` is its root): std only, plus
//! `libc` for a reset.

// The in-process proxy uses part of the engine, `ProxyProcess` the
// client's half of the control protocol; the program uses the rest.
#[allow(dead_code)]
pub(crate) mod control;
#[allow(dead_code)]
pub(crate) mod engine;
pub(crate) mod wire;
