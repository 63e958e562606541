//! `SqliteConnection`: the pragmas of a new connection.

use diesel::connection::SimpleConnection;
use diesel::{QueryResult, SqliteConnection};

use super::super::{Backend, ConnectSettings, Driver, TxnConnection};
use super::Sqlite;

impl TxnConnection for SqliteConnection {
    const BACKEND: Backend = Backend::Sqlite;
}

impl Driver for SqliteConnection {
    type Dialect = Sqlite;

    fn prepare(&mut self, settings: &ConnectSettings) -> QueryResult<()> {
        let mut sql = format!(
            "PRAGMA busy_timeout = {};",
            settings.sqlite_busy_timeout.as_millis()
        );
        if settings.sqlite_wal {
            // Readers do not block the writer. A no-op on `:memory:`.
            sql += "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;";
        }
        self.batch_execute(&sql)
    }
}
