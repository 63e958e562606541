use diesel::connection::SimpleConnection;
use diesel::{QueryResult, SqliteConnection};

use super::{Backend, ConnectSettings, TxnConnection};

impl TxnConnection for SqliteConnection {
    const BACKEND: Backend = Backend::Sqlite;

    fn __prepare(&mut self, settings: &ConnectSettings) -> QueryResult<()> {
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
