//! MariaDB and MySQL: transaction SQL ([`txn`]), error classification and
//! connect texts ([`errors`]), `MysqlConnection` ([`driver`], feature
//! `mysql`) and `AsyncMysqlConnection` ([`async_driver`], feature
//! `async-mysql`).

#[cfg(feature = "async-mysql")]
mod async_driver;
#[cfg(feature = "mysql")]
mod driver;
mod errors;
#[cfg(any(feature = "mysql", feature = "async-mysql"))]
mod rows;
mod txn;

use diesel::result::DatabaseErrorKind;

use super::{Backend, Dialect, ServerInfo, TxnSql, Unsupported};
use crate::classify::ErrorClass;
use crate::options::Options;

/// The MariaDB/MySQL dialect.
pub struct Mysql;

/// Read at connect (after the `on_connect` hook): the idle limit, which
/// server answered, and the session's id.
pub(crate) const SERVER_INFO_SQL: &str = "SELECT CAST(@@SESSION.wait_timeout AS SIGNED) AS \
     wait_timeout, VERSION() AS version, CAST(CONNECTION_ID() AS SIGNED) AS session_id";

/// The sessions among `ids` that run a statement (or wait for a lock)
/// rather than wait for their client (`Sleep`).
pub(crate) fn busy_sessions_sql(ids: &[u64]) -> String {
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!(
        "SELECT CAST(ID AS SIGNED) AS id FROM information_schema.PROCESSLIST WHERE ID IN ({}) \
         AND COMMAND <> 'Sleep'",
        if list.is_empty() {
            "NULL".to_owned()
        } else {
            list.join(", ")
        }
    )
}

impl Dialect for Mysql {
    const DEFAULT_PORT: Option<u16> = Some(3306);
    const BACKEND: Backend = Backend::Mysql;

    fn txn_sql(server: &ServerInfo, options: &Options) -> Result<TxnSql, Unsupported> {
        Ok(txn::sql(server, options))
    }

    fn classify(kind: DatabaseErrorKind, message: &str) -> ErrorClass {
        errors::classify(kind, message)
    }

    fn unreachable(message: &str) -> bool {
        errors::unreachable(message)
    }
}
