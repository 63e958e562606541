//! What differs between SQLite, MariaDB/MySQL and PostgreSQL: how to begin a
//! transaction with the requested options, what to set up on a new
//! connection, and which options cannot be honoured.

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::borrow::Cow;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, Connection};
use diesel::r2d2::R2D2Connection;
use diesel::QueryResult;

use crate::options::Options;

/// The database behind a connection type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite, embedded.
    Sqlite,
    /// MariaDB or MySQL.
    Mysql,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The product name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Mysql => "MariaDB/MySQL",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// What was learnt about the server when a connection was opened.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerInfo {
    /// The server closes a connection idle for longer than this
    /// (MariaDB/MySQL session `wait_timeout`).
    pub idle_limit: Option<Duration>,
    /// MariaDB rather than MySQL: decides the statement-timeout variable.
    pub mariadb: bool,
}

/// Settings applied to every new connection.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct ConnectSettings {
    /// SQLite `busy_timeout`.
    pub sqlite_busy_timeout: Duration,
    /// SQLite `journal_mode = WAL` on file databases.
    pub sqlite_wal: bool,
}

/// SQL that opens and closes one transaction with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TxnSql {
    /// Sent as one batch to begin the transaction.
    pub begin: Cow<'static, str>,
    /// Sent after COMMIT/ROLLBACK to undo session settings, if any.
    pub after: Option<&'static str>,
}

/// A diesel connection type `#[db_txn]` can run transactions on:
/// `SqliteConnection`, `MysqlConnection` and `PgConnection`, each behind the
/// cargo feature of the same backend.
pub trait TxnConnection:
    Connection<TransactionManager = AnsiTransactionManager> + R2D2Connection + Send + 'static
{
    /// Which database this is.
    const BACKEND: Backend;

    /// Apply the pool's settings to a new connection (before the user's
    /// `on_connect` hook, which may override them). Not a stable API.
    #[doc(hidden)]
    fn __prepare(&mut self, _settings: &ConnectSettings) -> QueryResult<()> {
        Ok(())
    }

    /// Read what the pool must know about the server (after the user's
    /// `on_connect` hook, so a `wait_timeout` it sets is seen). Not a stable API.
    #[doc(hidden)]
    fn __server_info(&mut self) -> QueryResult<ServerInfo> {
        Ok(ServerInfo::default())
    }

    /// The (client, server) TCP ports of this connection as the server sees
    /// them, `None` for a unix socket or an embedded database. Not a stable API.
    #[doc(hidden)]
    fn __socket_ports(&mut self) -> QueryResult<Option<(u16, u16)>> {
        Ok(None)
    }
}

/// Why an option cannot be honoured by a backend.
pub(crate) type Unsupported = &'static str;

/// The SQL for a top-level transaction with `options` on `backend`.
pub(crate) fn txn_sql(
    backend: Backend,
    server: &ServerInfo,
    options: &Options,
) -> Result<TxnSql, Unsupported> {
    match backend {
        Backend::Sqlite => sqlite_sql(options),
        Backend::Mysql => mysql_sql(server, options),
        Backend::Postgres => Ok(postgres_sql(options)),
    }
}

fn sqlite_sql(options: &Options) -> Result<TxnSql, Unsupported> {
    match options.isolation {
        None | Some(crate::Isolation::Serializable) => {}
        Some(_) => {
            return Err(
                "runs every transaction SERIALIZABLE and cannot honour a weaker \
                        `isolation`: use `isolation = serializable` or drop the option",
            )
        }
    }
    if options.timeout.is_some() {
        return Err(
            "has no statement timeout, so `timeout` cannot be honoured: drop it \
                    (lock waits are bounded by the pool's `sqlite_busy_timeout`)",
        );
    }
    Ok(if options.read_only {
        TxnSql {
            begin: "BEGIN DEFERRED; PRAGMA query_only = ON".into(),
            after: Some("PRAGMA query_only = OFF"),
        }
    } else {
        // IMMEDIATE takes the write lock up front, so concurrent writers wait
        // in busy_timeout instead of failing with SQLITE_BUSY on upgrade.
        TxnSql {
            begin: "BEGIN IMMEDIATE".into(),
            after: None,
        }
    })
}

fn mysql_sql(server: &ServerInfo, options: &Options) -> Result<TxnSql, Unsupported> {
    if options.timeout.is_none() && options.isolation.is_none() {
        // The common case, without an allocation per call.
        let begin = if options.read_only {
            "START TRANSACTION READ ONLY"
        } else {
            "START TRANSACTION"
        };
        return Ok(TxnSql {
            begin: begin.into(),
            after: None,
        });
    }
    let mut begin = String::new();
    let mut after = None;
    if let Some(t) = options.timeout {
        if server.mariadb {
            begin += &format!("SET SESSION max_statement_time = {:.3}; ", t.as_secs_f64());
            after = Some("SET SESSION max_statement_time = DEFAULT");
        } else {
            // MySQL bounds only SELECT statements, in milliseconds.
            begin += &format!("SET SESSION max_execution_time = {}; ", t.as_millis());
            after = Some("SET SESSION max_execution_time = DEFAULT");
        }
    }
    if let Some(level) = options.isolation {
        begin += &format!("SET TRANSACTION ISOLATION LEVEL {}; ", level.sql());
    }
    begin += "START TRANSACTION";
    if options.read_only {
        begin += " READ ONLY";
    }
    Ok(TxnSql {
        begin: begin.into(),
        after,
    })
}

fn postgres_sql(options: &Options) -> TxnSql {
    if options.timeout.is_none() && options.isolation.is_none() {
        let begin = if options.read_only {
            "BEGIN READ ONLY"
        } else {
            "BEGIN"
        };
        return TxnSql {
            begin: begin.into(),
            after: None,
        };
    }
    let mut begin = String::from("BEGIN");
    if let Some(level) = options.isolation {
        begin += " ISOLATION LEVEL ";
        begin += level.sql();
    }
    if options.read_only {
        begin += " READ ONLY";
    }
    if let Some(t) = options.timeout {
        // LOCAL: reverts by itself at COMMIT/ROLLBACK.
        begin += &format!("; SET LOCAL statement_timeout = {}", t.as_millis());
    }
    TxnSql {
        begin: begin.into(),
        after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isolation;

    fn sql(backend: Backend, mariadb: bool, o: Options) -> Result<TxnSql, Unsupported> {
        txn_sql(
            backend,
            &ServerInfo {
                idle_limit: None,
                mariadb,
            },
            &o,
        )
    }

    #[test]
    fn default_begin_per_backend() {
        let o = Options::new("f");
        assert_eq!(
            sql(Backend::Sqlite, false, o).unwrap().begin,
            "BEGIN IMMEDIATE"
        );
        assert_eq!(
            sql(Backend::Mysql, true, o).unwrap().begin,
            "START TRANSACTION"
        );
        assert_eq!(sql(Backend::Postgres, false, o).unwrap().begin, "BEGIN");
    }

    #[test]
    fn all_options_on_postgres() {
        let o = Options::new("f")
            .isolation(Isolation::Serializable)
            .read_only()
            .timeout_ms(1500);
        let s = sql(Backend::Postgres, false, o).unwrap();
        assert_eq!(
            s.begin,
            "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY; SET LOCAL statement_timeout = 1500"
        );
        assert_eq!(s.after, None);
    }

    #[test]
    fn all_options_on_mariadb_and_mysql() {
        let o = Options::new("f")
            .isolation(Isolation::RepeatableRead)
            .read_only()
            .timeout_ms(1500);
        let s = sql(Backend::Mysql, true, o).unwrap();
        assert_eq!(
            s.begin,
            "SET SESSION max_statement_time = 1.500; SET TRANSACTION ISOLATION LEVEL \
             REPEATABLE READ; START TRANSACTION READ ONLY"
        );
        assert_eq!(s.after, Some("SET SESSION max_statement_time = DEFAULT"));
        let s = sql(Backend::Mysql, false, o).unwrap();
        assert!(
            s.begin
                .starts_with("SET SESSION max_execution_time = 1500; "),
            "{}",
            s.begin
        );
    }

    #[test]
    fn sqlite_refuses_what_it_cannot_do() {
        let weak = Options::new("f").isolation(Isolation::ReadCommitted);
        assert!(sql(Backend::Sqlite, false, weak)
            .unwrap_err()
            .contains("SERIALIZABLE"));
        let timeout = Options::new("f").timeout_ms(10);
        assert!(sql(Backend::Sqlite, false, timeout)
            .unwrap_err()
            .contains("timeout"));
        let ser = Options::new("f")
            .isolation(Isolation::Serializable)
            .read_only();
        let s = sql(Backend::Sqlite, false, ser).unwrap();
        assert_eq!(s.begin, "BEGIN DEFERRED; PRAGMA query_only = ON");
        assert_eq!(s.after, Some("PRAGMA query_only = OFF"));
    }
}
