//! `#[db_txn]` on `async fn`, over diesel-async (feature `async`, with
//! `async-postgres` and/or `async-mysql`): the async pool ([`pool`], on
//! deadpool), the runner with its retry rule ([`runner`]), the task's
//! sessions ([`session`], for `lend_async`) and the default pools
//! ([`registry`]). Everything else (the dialects, the checkout policy and
//! its role checks, the health flags, the watchdog, the counters) is the sync
//! side's, shared.

pub(crate) mod pool;
pub(crate) mod registry;
pub(crate) mod runner;
pub(crate) mod session;
