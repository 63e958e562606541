//! PostgreSQL: transaction SQL ([`txn`]), error classification and connect
//! texts ([`errors`]), `PgConnection` ([`driver`], feature `postgres`) and
//! `AsyncPgConnection` ([`async_driver`], feature `async-postgres`).

#[cfg(feature = "async-postgres")]
mod async_driver;
#[cfg(feature = "postgres")]
mod driver;
mod errors;
#[cfg(any(feature = "postgres", feature = "async-postgres"))]
mod rows;
mod txn;

use diesel::result::DatabaseErrorKind;

use super::{Backend, Dialect, ServerInfo, TxnSql, Unsupported};
use crate::classify::ErrorClass;
use crate::options::Options;

/// The PostgreSQL dialect.
pub struct Postgres;

/// Read at connect: the session's id on the server.
pub(crate) const SERVER_INFO_SQL: &str = "SELECT pg_backend_pid() AS session_id";

/// The sessions among `ids` that run a statement (or wait for a lock)
/// rather than wait for their client: `idle in transaction` means the server
/// waits for us.
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

    fn txn_sql(_server: &ServerInfo, options: &Options) -> Result<TxnSql, Unsupported> {
        Ok(txn::sql(options))
    }

    fn classify(kind: DatabaseErrorKind, message: &str) -> ErrorClass {
        errors::classify(kind, message)
    }

    fn unreachable(message: &str) -> bool {
        errors::unreachable(message)
    }
}
