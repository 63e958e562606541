//! `MysqlConnection`: what the pool reads from the server at connect.

use diesel::{MysqlConnection, QueryResult, RunQueryDsl};

use super::super::{Backend, Driver, ServerInfo, TxnConnection};
use super::rows::{self, Id, Ports, Session, PORTS_SQL};
use super::{busy_sessions_sql, Mysql, SERVER_INFO_SQL};

impl TxnConnection for MysqlConnection {
    const BACKEND: Backend = Backend::Mysql;
}

impl Driver for MysqlConnection {
    type Dialect = Mysql;

    fn server_info(&mut self) -> QueryResult<ServerInfo> {
        let s: Session = diesel::sql_query(SERVER_INFO_SQL).get_result(self)?;
        Ok(s.server_info())
    }

    fn busy_sessions(&mut self, ids: &[u64]) -> QueryResult<Vec<u64>> {
        let rows: Vec<Id> = diesel::sql_query(busy_sessions_sql(ids)).load(self)?;
        Ok(rows::ids(rows))
    }

    fn socket_ports(&mut self) -> QueryResult<Option<(u16, u16)>> {
        let p: Ports = diesel::sql_query(PORTS_SQL).get_result(self)?;
        Ok(p.pair())
    }
}
