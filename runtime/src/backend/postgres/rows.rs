//! The rows the drivers read from PostgreSQL, and what they mean: shared by
//! `PgConnection` (`driver.rs`) and `AsyncPgConnection` (`async_driver.rs`).

use diesel::sql_types::{BigInt, Bool, Integer, Nullable};
use diesel::QueryableByName;

use super::super::{Position, Replay, ServerInfo, ServerRole};
use super::role::commit_end;

/// What [`SERVER_INFO_SQL`](super::SERVER_INFO_SQL) returns.
#[derive(QueryableByName)]
pub(super) struct Session {
    #[diesel(sql_type = Integer)]
    session_id: i32,
    #[diesel(sql_type = Bool)]
    standby: bool,
    #[diesel(sql_type = Bool)]
    read_only: bool,
}

impl Session {
    pub(super) fn server_info(self) -> ServerInfo {
        ServerInfo {
            session_id: u64::try_from(self.session_id).ok(),
            role: ServerRole {
                read_only: self.read_only,
                replica: self.standby,
            },
            ..ServerInfo::default()
        }
    }
}

/// What [`POSITION_SQL`](super::role::POSITION_SQL) returns: the end of
/// the WAL inserted so far, with the sizes [`commit_end`] needs.
#[derive(QueryableByName)]
pub(super) struct Lsn {
    #[diesel(sql_type = BigInt)]
    lsn: i64,
    #[diesel(sql_type = BigInt)]
    segment: i64,
    #[diesel(sql_type = BigInt)]
    block: i64,
}

impl Lsn {
    /// The position a standby must reach to show every commit made before
    /// the row was read.
    pub(super) fn position(self) -> Option<Position> {
        let size = |n: i64| u64::try_from(n).unwrap_or(0);
        u64::try_from(self.lsn)
            .ok()
            .map(|lsn| Position::Lsn(commit_end(lsn, size(self.segment), size(self.block))))
    }
}

/// What [`replayed_sql`](super::role::replayed_sql) returns.
#[derive(QueryableByName)]
pub(super) struct Replayed {
    #[diesel(sql_type = Bool)]
    standby: bool,
    #[diesel(sql_type = Bool)]
    reached: bool,
}

impl Replayed {
    /// `Some` when the look settles it: reached, or not a standby at all.
    pub(super) fn settled(&self) -> Option<Replay> {
        if !self.standby {
            Some(Replay::NotAReplica)
        } else if self.reached {
            Some(Replay::Reached)
        } else {
            None
        }
    }
}

/// What [`ROLE_SQL`](super::role::ROLE_SQL) returns: the role check of a
/// pooled connection, sync or async.
#[derive(QueryableByName)]
pub(super) struct Role {
    #[diesel(sql_type = Bool)]
    standby: bool,
    #[diesel(sql_type = Bool)]
    read_only: bool,
}

impl Role {
    pub(super) fn role(self) -> ServerRole {
        ServerRole {
            read_only: self.read_only,
            replica: self.standby,
        }
    }
}

/// A row of [`busy_sessions_sql`](super::busy_sessions_sql).
#[derive(QueryableByName)]
pub(super) struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

pub(super) fn ids(rows: Vec<Id>) -> Vec<u64> {
    rows.into_iter()
        .filter_map(|r| u64::try_from(r.id).ok())
        .collect()
}

/// What [`PORTS_SQL`] returns.
#[derive(QueryableByName)]
pub(super) struct Ports {
    #[diesel(sql_type = Nullable<Integer>)]
    client: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    server: Option<i32>,
}

/// The client's and the server's ports; NULL over a unix socket.
pub(super) const PORTS_SQL: &str =
    "SELECT inet_client_port() AS client, inet_server_port() AS server";

impl Ports {
    /// (client, server) ports; `None` over a unix socket.
    pub(super) fn pair(self) -> Option<(u16, u16)> {
        let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
        port(self.client).zip(port(self.server))
    }
}
