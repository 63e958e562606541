//! MariaDB and MySQL: transaction SQL ([`txn`]), error classification and
//! connect texts ([`errors`]), `MysqlConnection` ([`driver`], feature
//! `mysql`) and `AsyncMysqlConnection` ([`async_driver`], feature
//! `async-mysql`).

#[cfg(feature = "async-mysql")]
mod async_driver;
#[cfg(feature = "mysql")]
mod driver;
mod errors;
pub(crate) mod resolve;
// Used by the drivers (behind their features; the async one reads the role
// only) and the unit tests.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
mod role;
#[cfg(any(feature = "mysql", feature = "async-mysql"))]
mod rows;
mod txn;
mod url;

use diesel::result::DatabaseErrorKind;

use super::{Backend, Dialect, Scheme, ServerInfo, Target, TxnSql, Unsupported};
use crate::classify::ErrorClass;
use crate::options::Options;

/// The MariaDB/MySQL dialect.
pub struct Mysql;

/// Read at connect (after the `on_connect` hook): the idle limit, which
/// server answered, the session's id, and the role (as [`role::ROLE_SQL`]
/// reads it).
// Used by the driver (feature `mysql`) and the unit tests.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) const SERVER_INFO_SQL: &str = "SELECT CAST(@@SESSION.wait_timeout AS SIGNED) AS \
     wait_timeout, VERSION() AS version, CAST(CONNECTION_ID() AS SIGNED) AS session_id, \
     CAST(@@GLOBAL.read_only AS CHAR) AS read_only";

/// Ends a session of this user whose link died (its transaction rolls back).
// Used by the driver (feature `mysql`) and the unit tests.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
pub(crate) fn end_session_sql(id: u64) -> String {
    format!("KILL {id}")
}

/// The sessions among `ids` that run a statement (or wait for a lock)
/// rather than wait for their client (`Sleep`).
// Used by the driver (feature `mysql`) and the unit tests.
#[cfg_attr(not(feature = "mysql"), allow(dead_code))]
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

    fn target(url: &str) -> Result<Target, String> {
        url::target(url)
    }

    #[inline]
    fn txn_sql(
        server: &ServerInfo,
        options: &Options,
        _upfront: bool,
    ) -> Result<TxnSql, Unsupported> {
        if server.behind_pooler && options.timeout.is_some() {
            // MariaDB and MySQL bound statements per session only: behind a
            // transaction pooler the setting would stay with a server session
            // another client gets next.
            return Err(
                "cannot bound statements with `timeout` through a transaction pooler: \
                        MariaDB/MySQL statement timeouts are session settings; remove \
                        `timeout`, or bound the statement itself (MariaDB `SET STATEMENT \
                        max_statement_time = N FOR ...`, MySQL `/*+ MAX_EXECUTION_TIME(ms) */`)",
            );
        }
        Ok(txn::sql(server, options))
    }

    fn end_session_sql(id: u64) -> Option<String> {
        Some(end_session_sql(id))
    }

    const RESOLVE: Scheme = Scheme::Marker;

    fn begin_with_marker(begin: &str, id: i64) -> String {
        resolve::begin_with_marker(begin, id)
    }

    fn classify(kind: DatabaseErrorKind, message: &str) -> ErrorClass {
        errors::classify(kind, message)
    }

    fn unreachable(message: &str) -> bool {
        errors::unreachable(message)
    }
}
