//! PostgreSQL: transaction SQL ([`txn`]), error classification and connect
//! texts ([`errors`]), and `PgConnection` ([`driver`], feature `postgres`).

#[cfg(feature = "postgres")]
mod driver;
mod errors;
mod txn;
mod url;

use diesel::result::DatabaseErrorKind;

use super::{Backend, Dialect, ServerInfo, Target, TxnSql, Unsupported};
use crate::classify::ErrorClass;
use crate::options::Options;

/// The PostgreSQL dialect.
pub struct Postgres;

impl Dialect for Postgres {
    const BACKEND: Backend = Backend::Postgres;

    fn target(url: &str) -> Result<Target, String> {
        url::target(url)
    }

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
