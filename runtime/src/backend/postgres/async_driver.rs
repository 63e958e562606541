//! `AsyncPgConnection` (diesel-async over tokio-postgres): the same reads as
//! `driver.rs`, the same transaction-id reads (`resolve.rs`), and the
//! cancel request for a statement whose future was dropped.

use std::time::Duration;

use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::super::async_driver::{AsyncDriver, AsyncTxnConnection, Canceller};
use super::super::{
    Backend, LostSession, Outcome, Position, PositionOf, Replay, ServerInfo, ServerRole, Token,
};
use super::role::{replayed_sql, ReplayPoll, POSITION_SQL, ROLE_SQL};
use super::rows::{self, Id, Lsn, Ports, Replayed, Role, Session, PORTS_SQL};
use super::{busy_sessions_sql, resolve, Postgres, SERVER_INFO_SQL};

impl AsyncTxnConnection for AsyncPgConnection {
    const BACKEND: Backend = Backend::Postgres;
}

impl AsyncDriver for AsyncPgConnection {
    type Dialect = Postgres;

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
        _server: &ServerInfo,
        _of: PositionOf,
    ) -> QueryResult<Option<Position>> {
        let p: Lsn = diesel::sql_query(POSITION_SQL).get_result(self).await?;
        Ok(p.position())
    }

    async fn wait_for(
        &mut self,
        _server: &ServerInfo,
        position: &Position,
        limit: Duration,
    ) -> QueryResult<Replay> {
        let Position::Lsn(lsn) = position else {
            return Ok(Replay::Behind);
        };
        let sql = replayed_sql(&Position::lsn_text(*lsn));
        let mut poll = ReplayPoll::new(limit);
        loop {
            let r: Replayed = diesel::sql_query(&sql).get_result(self).await?;
            if let Some(settled) = r.settled() {
                return Ok(settled);
            }
            match poll.next_pause() {
                Some(pause) => tokio::time::sleep(pause).await,
                None => return Ok(Replay::Behind),
            }
        }
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

    async fn before_commit(&mut self) -> QueryResult<Option<Token>> {
        resolve::before_commit_async(self).await
    }

    async fn commit_outcome(&mut self, token: &Token) -> QueryResult<Outcome> {
        match token {
            Token::Xid(t) => resolve::outcome_async(self, t).await,
            Token::Marker { .. } => Ok(Outcome::Unknown("not a PostgreSQL token")),
        }
    }

    async fn end_lost_session(&mut self, token: &Token, _lost: &LostSession) -> QueryResult<bool> {
        match token {
            Token::Xid(t) => resolve::end_session_async(self, t).await,
            Token::Marker { .. } => Ok(false),
        }
    }

    fn canceller(&self) -> Canceller {
        // PostgreSQL's cancel request, on a socket of its own: the backend
        // stops its statement and then finds its client gone. (A server that
        // demands TLS refuses it; the statement then runs to its end, and the
        // closed connection still rolls it back.)
        let token = self.cancel_token();
        Box::new(move || {
            Box::pin(async move {
                let _ = token.cancel_query(tokio_postgres::NoTls).await;
            })
        })
    }
}
