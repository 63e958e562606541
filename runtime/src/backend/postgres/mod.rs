//! PostgreSQL: transaction SQL ([`txn`]), error classification and connect
//! texts ([`errors`]), `PgConnection` ([`driver`], feature `postgres`) and
//! `AsyncPgConnection` ([`async_driver`], feature `async-postgres`).

#[cfg(feature = "async-postgres")]
mod async_driver;
#[cfg(feature = "postgres")]
mod driver;
mod errors;
pub(crate) mod resolve;
// Used by the drivers (behind their features; the async one reads the role
// only) and the unit tests.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
mod role;
#[cfg(any(feature = "postgres", feature = "async-postgres"))]
mod rows;
mod txn;
mod url;

use diesel::result::DatabaseErrorKind;

use super::{Backend, Dialect, Scheme, ServerInfo, Target, TxnSql, Unsupported};
use crate::classify::ErrorClass;
use crate::options::Options;

/// The PostgreSQL dialect.
pub struct Postgres;

/// Read at connect: the session's id on the server, and its role (as
/// [`role::ROLE_SQL`] reads it).
// Used by the driver (feature `postgres`) and the unit tests.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) const SERVER_INFO_SQL: &str = "SELECT pg_backend_pid() AS session_id, \
     pg_is_in_recovery() AS standby, current_setting('transaction_read_only') = 'on' AS read_only";

/// Ends a session of this role whose link died (its transaction rolls back).
// Used by the driver (feature `postgres`) and the unit tests.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn end_session_sql(id: u64) -> String {
    format!("SELECT pg_terminate_backend({id})")
}

/// The sessions among `ids` that run a statement (or wait for a lock)
/// rather than wait for their client: `idle in transaction` means the server
/// waits for us.
// Used by the driver (feature `postgres`) and the unit tests.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn busy_sessions_sql(ids: &[u64]) -> String {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!(
        "SELECT pid::int8 AS id FROM pg_stat_activity WHERE pid IN ({}) AND state NOT IN \
         ('idle', 'idle in transaction', 'idle in transaction (aborted)')",
        if list.is_empty() {
            "NULL".to_owned()
        } else {
            list.join(", ")
        }
    )
}

impl Dialect for Postgres {
    const DEFAULT_PORT: Option<u16> = Some(5432);
    const BACKEND: Backend = Backend::Postgres;

    fn target(url: &str) -> Result<Target, String> {
        url::target(url)
    }

    // A bare ROLLBACK outside a transaction makes the server log a WARNING
    // ("there is no transaction in progress") for every clean return; BEGIN
    // then ROLLBACK is silent then, and warns only when a transaction was
    // really left open.
    const RAW_RESET_SQL: &'static str = "BEGIN; ROLLBACK";

    #[inline]
    fn txn_sql(
        _server: &ServerInfo,
        options: &Options,
        _upfront: bool,
    ) -> Result<TxnSql, Unsupported> {
        Ok(txn::sql(options))
    }

    fn end_session_sql(id: u64) -> Option<String> {
        Some(end_session_sql(id))
    }

    const RESOLVE: Scheme = Scheme::Xid;

    fn classify(kind: DatabaseErrorKind, message: &str) -> ErrorClass {
        errors::classify(kind, message)
    }

    fn unreachable(message: &str) -> bool {
        errors::unreachable(message)
    }
}
