//! SQLite: transaction SQL and the options it cannot honour ([`txn`]), BEGIN
//! and COMMIT prepared once per connection ([`prepared`], feature `sqlite`), the
//! names a pool takes ([`url`]), why a file could not be opened ([`open`]),
//! its one writer at a time ([`lock`]), error classification (below: an
//! embedded database has no link to lose), and `SqliteConnection`
//! ([`driver`], feature `sqlite`).

#[cfg(feature = "sqlite")]
mod driver;
mod lock;
mod open;
#[cfg(feature = "sqlite")]
mod prepared;
mod txn;
mod url;

use diesel::result::DatabaseErrorKind;
use diesel::ConnectionError;

pub use lock::SingleWriter;

use super::{Backend, Dialect, ServerInfo, Target, TxnSql, Unsupported};
use crate::classify::{Disconnect, ErrorClass};
use crate::options::Options;

/// The SQLite dialect.
pub struct Sqlite;

impl Dialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;
    const DEFAULT_PORT: Option<u16> = None;

    fn target(url: &str) -> Result<Target, String> {
        url::target(url)
    }

    #[inline]
    fn txn_sql(
        _server: &ServerInfo,
        options: &Options,
        upfront: bool,
    ) -> Result<TxnSql, Unsupported> {
        txn::sql(options, upfront)
    }

    fn lock_busy(_kind: DatabaseErrorKind, message: &str) -> bool {
        // SQLITE_BUSY and its extended codes (BUSY_SNAPSHOT: a deferred
        // transaction's snapshot went stale before its first write).
        message.contains("database is locked")
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

    fn explain_connect(url: &str, error: ConnectionError) -> ConnectionError {
        open::explain(url, error)
    }

    fn idle_rollback(message: &str) -> bool {
        message.contains("no transaction is active")
    }
}
