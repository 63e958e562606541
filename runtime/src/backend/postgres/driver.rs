//! `PgConnection`: what the pool reads from the server at connect, its
//! role, and replication positions.

use std::time::Duration;

use diesel::{PgConnection, QueryResult, RunQueryDsl};

use super::super::{
    Backend, Driver, LostSession, Outcome, Position, PositionOf, Replay, ServerInfo, ServerRole,
    Token, TxnConnection,
};
use super::role::{replayed_sql, ReplayPoll, POSITION_SQL, ROLE_SQL};
use super::rows::{self, Id, Lsn, Ports, Replayed, Role, Session, PORTS_SQL};
use super::{busy_sessions_sql, end_session_sql, resolve, Postgres, SERVER_INFO_SQL};
use crate::registry::DefaultSlot;

#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
impl TxnConnection for PgConnection {
    const BACKEND: Backend = Backend::Postgres;
}

impl Driver for PgConnection {
    type Dialect = Postgres;

    fn default_slot() -> &'static DefaultSlot<Self> {
        static SLOT: DefaultSlot<PgConnection> = DefaultSlot::new();
        &SLOT
    }

    fn server_info(&mut self) -> QueryResult<ServerInfo> {
        let s: Session = diesel::sql_query(SERVER_INFO_SQL).get_result(self)?;
        Ok(s.server_info())
    }

    fn end_session(&mut self, id: u64) -> QueryResult<()> {
        use diesel::connection::SimpleConnection;
        self.batch_execute(&end_session_sql(id))
    }

    fn role(&mut self) -> QueryResult<ServerRole> {
        let r: Role = diesel::sql_query(ROLE_SQL).get_result(self)?;
        Ok(r.role())
    }

    fn position(&mut self, _server: &ServerInfo, _of: PositionOf) -> QueryResult<Option<Position>> {
        // One WAL for the whole server: a session's last commit is at or
        // before the end of what has been inserted.
        let p: Lsn = diesel::sql_query(POSITION_SQL).get_result(self)?;
        Ok(p.position())
    }

    fn wait_for(
        &mut self,
        _server: &ServerInfo,
        position: &Position,
        limit: Duration,
    ) -> QueryResult<Replay> {
        let Position::Lsn(lsn) = position else {
            // A position of another server family: it cannot be shown here.
            return Ok(Replay::Behind);
        };
        let sql = replayed_sql(&Position::lsn_text(*lsn));
        let mut poll = ReplayPoll::new(limit);
        loop {
            let r: Replayed = diesel::sql_query(&sql).get_result(self)?;
            if let Some(settled) = r.settled() {
                return Ok(settled);
            }
            match poll.next_pause() {
                Some(pause) => std::thread::sleep(pause),
                None => return Ok(Replay::Behind),
            }
        }
    }

    fn busy_sessions(&mut self, ids: &[u64]) -> QueryResult<Vec<u64>> {
        let rows: Vec<Id> = diesel::sql_query(busy_sessions_sql(ids)).load(self)?;
        Ok(rows::ids(rows))
    }

    fn socket_ports(&mut self) -> QueryResult<Option<(u16, u16)>> {
        let p: Ports = diesel::sql_query(PORTS_SQL).get_result(self)?;
        Ok(p.pair())
    }

    fn before_commit(&mut self) -> QueryResult<Option<Token>> {
        resolve::before_commit(self)
    }

    fn commit_outcome(&mut self, token: &Token) -> QueryResult<Outcome> {
        match token {
            Token::Xid(t) => resolve::outcome(self, t),
            Token::Marker { .. } => Ok(Outcome::Unknown("not a PostgreSQL token")),
        }
    }

    fn end_lost_session(&mut self, token: &Token, _lost: &LostSession) -> QueryResult<bool> {
        match token {
            Token::Xid(t) => resolve::end_session(self, t),
            Token::Marker { .. } => Ok(false),
        }
    }
}
