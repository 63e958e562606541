use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::{MysqlConnection, QueryResult, QueryableByName, RunQueryDsl};

use super::{Backend, ConnectSettings, ServerInfo, TxnConnection};

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = BigInt)]
    wait_timeout: i64,
    #[diesel(sql_type = Text)]
    version: String,
}

impl TxnConnection for MysqlConnection {
    const BACKEND: Backend = Backend::Mysql;

    fn __on_connect(&mut self, _: &ConnectSettings) -> QueryResult<ServerInfo> {
        // The server closes this connection after `wait_timeout` seconds idle;
        // the pool retires it before then instead of finding out the hard way.
        let s: Session = diesel::sql_query(
            "SELECT CAST(@@SESSION.wait_timeout AS SIGNED) AS wait_timeout, VERSION() AS version",
        )
        .get_result(self)?;
        Ok(ServerInfo {
            idle_limit: u64::try_from(s.wait_timeout).ok().map(Duration::from_secs),
            mariadb: s.version.contains("MariaDB"),
        })
    }
}
