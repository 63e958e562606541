//! `PgConnection`: what the pool reads from the server at connect, its
//! role, and replication positions.

use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Bool};
use diesel::{PgConnection, QueryResult, QueryableByName, RunQueryDsl};

use super::super::{
    Backend, Driver, LostSession, Outcome, Position, PositionOf, Replay, ServerInfo, ServerRole,
    Token, TxnConnection,
};
use super::role::{commit_end, replayed_sql, POSITION_SQL, ROLE_SQL};
use super::rows::{self, Id, Ports, Role, Session, PORTS_SQL};
use super::{busy_sessions_sql, end_session_sql, resolve, Postgres, SERVER_INFO_SQL};
use crate::registry::DefaultSlot;

#[derive(QueryableByName)]
struct Lsn {
    #[diesel(sql_type = BigInt)]
    lsn: i64,
    #[diesel(sql_type = BigInt)]
    segment: i64,
    #[diesel(sql_type = BigInt)]
    block: i64,
}

#[derive(QueryableByName)]
struct Replayed {
    #[diesel(sql_type = Bool)]
    standby: bool,
    #[diesel(sql_type = Bool)]
    reached: bool,
}

/// The longest pause between two looks at a standby's replay location.
const REPLAY_POLL_MAX: Duration = Duration::from_millis(5);

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
        let size = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(u64::try_from(p.lsn)
            .ok()
            .map(|lsn| Position::Lsn(commit_end(lsn, size(p.segment), size(p.block)))))
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
        // PostgreSQL 15 has no function that waits for a replay location:
        // look, then look again after a short, growing pause.
        let sql = replayed_sql(&Position::lsn_text(*lsn));
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_micros(200);
        loop {
            let r: Replayed = diesel::sql_query(&sql).get_result(self)?;
            if !r.standby {
                return Ok(Replay::NotAReplica);
            }
            if r.reached {
                return Ok(Replay::Reached);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Replay::Behind);
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(REPLAY_POLL_MAX);
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
