//! `AsyncMysqlConnection` (diesel-async over mysql_async): the same reads as
//! `driver.rs`, the same commit markers (`resolve.rs`), and `KILL QUERY`
//! for a statement whose future was dropped.

use std::time::Duration;

use diesel::QueryResult;
use diesel_async::{AsyncMysqlConnection, RunQueryDsl};

use super::super::async_driver::{AsyncDriver, AsyncTxnConnection, Canceller};
use super::super::{
    Backend, LostSession, Outcome, Position, PositionOf, Replay, ServerInfo, ServerRole, Token,
};
use super::role::{position_sql, wait_sql, wait_target, ROLE_SQL};
use super::rows::{self, Gtid, Id, Ports, Role, Session, Waited, PORTS_SQL};
use super::{busy_sessions_sql, resolve, Mysql, SERVER_INFO_SQL};

impl AsyncTxnConnection for AsyncMysqlConnection {
    const BACKEND: Backend = Backend::Mysql;
}

impl AsyncDriver for AsyncMysqlConnection {
    type Dialect = Mysql;

    async fn server_info(&mut self) -> QueryResult<ServerInfo> {
        let s: Session = diesel::sql_query(SERVER_INFO_SQL).get_result(self).await?;
        Ok(s.server_info())
    }

    async fn role(&mut self) -> QueryResult<ServerRole> {
        let r: Role = diesel::sql_query(ROLE_SQL).get_result(self).await?;
        Ok(r.role())
    }

    async fn position(
        &mut self,
        server: &ServerInfo,
        of: PositionOf,
    ) -> QueryResult<Option<Position>> {
        let g: Gtid = diesel::sql_query(position_sql(server.flavor, of))
            .get_result(self)
            .await?;
        Ok(g.position(server.flavor))
    }

    async fn wait_for(
        &mut self,
        server: &ServerInfo,
        position: &Position,
        limit: Duration,
    ) -> QueryResult<Replay> {
        let Some(value) = wait_target(position) else {
            return Ok(Replay::Behind);
        };
        let w: Waited = diesel::sql_query(wait_sql(server.flavor, &value, limit))
            .get_result(self)
            .await?;
        Ok(w.replay())
    }

    async fn socket_ports(&mut self) -> QueryResult<Option<(u16, u16)>> {
        let p: Ports = diesel::sql_query(PORTS_SQL).get_result(self).await?;
        Ok(p.pair())
    }

    async fn busy_sessions(&mut self, ids: Vec<u64>) -> QueryResult<Vec<u64>> {
        let rows: Vec<Id> = diesel::sql_query(busy_sessions_sql(&ids))
            .load(self)
            .await?;
        Ok(rows::ids(rows))
    }

    async fn create_markers(&mut self) -> QueryResult<()> {
        resolve::create_async(self).await
    }

    async fn forget_markers(&mut self, ids: Vec<i64>) -> QueryResult<()> {
        resolve::forget_async(self, &ids).await
    }

    async fn commit_outcome(&mut self, token: &Token) -> QueryResult<Outcome> {
        match token {
            Token::Marker { id } => resolve::outcome_async(self, *id).await,
            Token::Xid(_) => Ok(Outcome::Unknown("not a MariaDB/MySQL token")),
        }
    }

    async fn end_lost_session(&mut self, _token: &Token, lost: &LostSession) -> QueryResult<bool> {
        resolve::end_session_async(self, lost).await
    }

    fn canceller(&self) -> Canceller {
        // `KILL QUERY <id>` over a connection of its own: the session then
        // stops its statement and sees its client gone.
        let token = self.cancel_token();
        Box::new(move || {
            Box::pin(async move {
                let _ = token.cancel_query().await;
            })
        })
    }
}
