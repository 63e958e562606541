//! MariaDB and MySQL: transaction SQL ([`txn`]), error classification and
//! connect texts ([`errors`]), and `MysqlConnection` ([`driver`], feature
//! `mysql`).

#[cfg(feature = "mysql")]
mod driver;
mod errors;
mod txn;
mod url;

use diesel::result::DatabaseErrorKind;

use super::{Backend, Dialect, ServerInfo, Target, TxnSql, Unsupported};
use crate::classify::ErrorClass;
use crate::options::Options;

/// The MariaDB/MySQL dialect.
pub struct Mysql;

impl Dialect for Mysql {
    const BACKEND: Backend = Backend::Mysql;

    fn target(url: &str) -> Result<Target, String> {
        url::target(url)
    }

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
