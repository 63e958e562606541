//! `SqliteConnection`: the pragmas of a new connection, and which database
//! it opened.

use diesel::connection::SimpleConnection;
use diesel::result::Error as DieselError;
use diesel::sql_types::Text;
use diesel::{QueryResult, QueryableByName, RunQueryDsl, SqliteConnection};

use super::super::{Backend, ConnectSettings, Driver, ServerInfo, TxnConnection};
use super::lock::{database_id, SingleWriter};
use super::Sqlite;
use crate::registry::DefaultSlot;

#[derive(QueryableByName)]
struct Opened {
    /// Empty for a database without a file.
    #[diesel(sql_type = Text)]
    file: String,
    #[diesel(sql_type = Text)]
    journal: String,
}

#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
impl TxnConnection for SqliteConnection {
    const BACKEND: Backend = Backend::Sqlite;
}

/// The file behind `conn` and its journal mode.
fn opened(conn: &mut SqliteConnection) -> QueryResult<Opened> {
    diesel::sql_query(
        "SELECT (SELECT file FROM pragma_database_list WHERE name = 'main') AS file, \
         (SELECT journal_mode FROM pragma_journal_mode) AS journal",
    )
    .get_result(conn)
}

impl Driver for SqliteConnection {
    type Dialect = Sqlite;

    fn default_slot() -> &'static DefaultSlot<Self> {
        static SLOT: DefaultSlot<SqliteConnection> = DefaultSlot::new();
        &SLOT
    }

    #[inline]
    fn begin_top_level(&mut self, sql: &str, direct: bool) -> QueryResult<()> {
        super::prepared::begin(self, sql, direct)
    }

    #[inline]
    fn commit_top_level(&mut self, direct: bool) -> QueryResult<()> {
        super::prepared::commit(self, direct)
    }

    fn prepare(&mut self, settings: &ConnectSettings) -> QueryResult<()> {
        self.batch_execute(&format!(
            "PRAGMA busy_timeout = {};",
            settings.sqlite_busy_timeout.as_millis()
        ))?;
        if settings.sqlite_wal {
            // Readers do not block the writer. A no-op on an in-memory database.
            let wal = self.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
            if let Err(DieselError::DatabaseError(kind, info)) = &wal {
                // "unable to open database file", without the file: say which.
                let file = opened(self).map(|o| o.file).unwrap_or_default();
                if !file.is_empty() {
                    let message = super::open::explain_wal(info.message(), file.as_ref());
                    return Err(DieselError::DatabaseError(*kind, Box::new(message)));
                }
            }
            wal?;
        }
        Ok(())
    }

    fn server_info(&mut self) -> QueryResult<ServerInfo> {
        // After the user's hook, so a journal mode it sets is the one seen.
        let opened = opened(self)?;
        Ok(ServerInfo {
            single_writer: Some(SingleWriter {
                database: (!opened.file.is_empty()).then(|| database_id(&opened.file)),
                wal: opened.journal.eq_ignore_ascii_case("wal"),
            }),
            ..ServerInfo::default()
        })
    }
}
