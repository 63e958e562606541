//! SQLite: transaction SQL and the options it cannot honour ([`txn`]),
//! error classification (below: an embedded database has no link to lose),
//! and `SqliteConnection` ([`driver`], feature `sqlite`).

#[cfg(feature = "sqlite")]
mod driver;
mod txn;

use diesel::result::DatabaseErrorKind;

use super::{Backend, Dialect, ServerInfo, TxnSql, Unsupported};
use crate::classify::{Disconnect, ErrorClass};
use crate::options::Options;

/// The SQLite dialect.
pub struct Sqlite;

impl Dialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    const DEFAULT_PORT: Option<u16> = None;

    fn txn_sql(_server: &ServerInfo, options: &Options) -> Result<TxnSql, Unsupported> {
        txn::sql(options)
    }

    fn classify(kind: DatabaseErrorKind, _message: &str) -> ErrorClass {
        // A closed handle is still a connection that must not be reused.
        match kind {
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
                ErrorClass::Disconnect(Disconnect::Closed)
            }
            _ => ErrorClass::Other,
        }
    }

    fn unreachable(_message: &str) -> bool {
        // Opening a file either works or fails for good.
        false
    }
}
