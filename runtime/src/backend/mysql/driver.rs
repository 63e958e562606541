//! `MysqlConnection`: what the pool reads from the server at connect, its
//! role, and replication positions.

use std::time::Duration;

use diesel::{MysqlConnection, QueryResult, RunQueryDsl};

use super::super::{
    Backend, Driver, LostSession, Outcome, Position, PositionOf, Replay, ServerInfo, ServerRole,
    Token, TxnConnection,
};
use super::role::{position_sql, wait_sql, wait_target, ROLE_SQL};
use super::rows::{self, Gtid, Id, Ports, Role, Session, Waited, PORTS_SQL};
use super::{busy_sessions_sql, end_session_sql, resolve, Mysql, SERVER_INFO_SQL};
use crate::registry::DefaultSlot;

#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
impl TxnConnection for MysqlConnection {
    const BACKEND: Backend = Backend::Mysql;
}

impl Driver for MysqlConnection {
    type Dialect = Mysql;

    fn default_slot() -> &'static DefaultSlot<Self> {
        static SLOT: DefaultSlot<MysqlConnection> = DefaultSlot::new();
        &SLOT
    }

    fn server_info(&mut self) -> QueryResult<ServerInfo> {
        let s: Session = diesel::sql_query(SERVER_INFO_SQL).get_result(self)?;
        Ok(s.server_info())
    }

    fn role(&mut self) -> QueryResult<ServerRole> {
        let r: Role = diesel::sql_query(ROLE_SQL).get_result(self)?;
        Ok(r.role())
    }

    fn position(&mut self, server: &ServerInfo, of: PositionOf) -> QueryResult<Option<Position>> {
        let g: Gtid = diesel::sql_query(position_sql(server.flavor, of)).get_result(self)?;
        Ok(g.position(server.flavor))
    }

    fn wait_for(
        &mut self,
        server: &ServerInfo,
        position: &Position,
        limit: Duration,
    ) -> QueryResult<Replay> {
        let Some(value) = wait_target(position) else {
            return Ok(Replay::Behind);
        };
        let w: Waited =
            diesel::sql_query(wait_sql(server.flavor, &value, limit)).get_result(self)?;
        Ok(w.replay())
    }

    fn end_session(&mut self, id: u64) -> QueryResult<()> {
        use diesel::connection::SimpleConnection;
        self.batch_execute(&end_session_sql(id))
    }

    fn busy_sessions(&mut self, ids: &[u64]) -> QueryResult<Vec<u64>> {
        let rows: Vec<Id> = diesel::sql_query(busy_sessions_sql(ids)).load(self)?;
        Ok(rows::ids(rows))
    }

    fn socket_ports(&mut self) -> QueryResult<Option<(u16, u16)>> {
        let p: Ports = diesel::sql_query(PORTS_SQL).get_result(self)?;
        Ok(p.pair())
    }

    fn create_markers(&mut self) -> QueryResult<()> {
        resolve::create(self)
    }

    fn forget_markers(&mut self, ids: &[i64]) -> QueryResult<()> {
        resolve::forget(self, ids)
    }

    fn commit_outcome(&mut self, token: &Token) -> QueryResult<Outcome> {
        match token {
            Token::Marker { id } => resolve::outcome(self, *id),
            Token::Xid(_) => Ok(Outcome::Unknown("not a MariaDB/MySQL token")),
        }
    }

    fn end_lost_session(&mut self, _token: &Token, lost: &LostSession) -> QueryResult<bool> {
        resolve::end_session(self, lost)
    }
}
