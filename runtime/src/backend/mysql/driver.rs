//! `MysqlConnection`: what the pool reads from the server at connect.

use std::time::Duration;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{MysqlConnection, QueryResult, QueryableByName, RunQueryDsl};

use super::super::{Backend, Driver, Flavor, ServerInfo, TxnConnection};
use super::{busy_sessions_sql, end_session_sql, Mysql, SERVER_INFO_SQL};

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = BigInt)]
    wait_timeout: i64,
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = BigInt)]
    session_id: i64,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Ports {
    #[diesel(sql_type = Nullable<Text>)]
    host: Option<String>,
    #[diesel(sql_type = BigInt)]
    port: i64,
}

#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
impl TxnConnection for MysqlConnection {
    const BACKEND: Backend = Backend::Mysql;
}

impl Driver for MysqlConnection {
    type Dialect = Mysql;

    fn server_info(&mut self) -> QueryResult<ServerInfo> {
        // The server closes this connection after `wait_timeout` seconds idle;
        // the pool retires it before then instead of finding out the hard way.
        let s: Session = diesel::sql_query(SERVER_INFO_SQL).get_result(self)?;
        Ok(ServerInfo {
            idle_limit: u64::try_from(s.wait_timeout).ok().map(Duration::from_secs),
            flavor: if s.version.contains("MariaDB") {
                Flavor::MariaDb
            } else {
                Flavor::Mysql
            },
            session_id: u64::try_from(s.session_id).ok(),
            single_writer: None,
        })
    }

    fn end_session(&mut self, id: u64) -> QueryResult<()> {
        use diesel::connection::SimpleConnection;
        self.batch_execute(&end_session_sql(id))
    }

    fn busy_sessions(&mut self, ids: &[u64]) -> QueryResult<Vec<u64>> {
        let rows: Vec<Id> = diesel::sql_query(busy_sessions_sql(ids)).load(self)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| u64::try_from(r.id).ok())
            .collect())
    }

    fn socket_ports(&mut self) -> QueryResult<Option<(u16, u16)>> {
        let p: Ports = diesel::sql_query(
            "SELECT HOST AS host, CAST(@@port AS SIGNED) AS port \
             FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
        )
        .get_result(self)?;
        // HOST is "address:port" over TCP, "localhost" over a unix socket.
        let client = p
            .host
            .as_deref()
            .and_then(|h| h.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok());
        Ok(client.zip(u16::try_from(p.port).ok()))
    }
}
