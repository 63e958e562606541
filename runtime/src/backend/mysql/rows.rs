//! The rows the drivers read from MariaDB/MySQL, and what they mean: shared
//! by `MysqlConnection` (`driver.rs`) and `AsyncMysqlConnection`
//! (`async_driver.rs`).

use std::time::Duration;

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::QueryableByName;

use super::super::{Flavor, Position, Replay, ServerInfo, ServerRole};

/// What [`SERVER_INFO_SQL`](super::SERVER_INFO_SQL) returns.
#[derive(QueryableByName)]
pub(super) struct Session {
    #[diesel(sql_type = BigInt)]
    wait_timeout: i64,
    #[diesel(sql_type = Text)]
    version: String,
    #[diesel(sql_type = BigInt)]
    session_id: i64,
    #[diesel(sql_type = Text)]
    read_only: String,
}

impl Session {
    pub(super) fn server_info(self) -> ServerInfo {
        // The server closes this connection after `wait_timeout` seconds idle;
        // the pool retires it before then instead of finding out the hard way.
        ServerInfo {
            idle_limit: u64::try_from(self.wait_timeout)
                .ok()
                .map(Duration::from_secs),
            flavor: if self.version.contains("MariaDB") {
                Flavor::MariaDb
            } else {
                Flavor::Mysql
            },
            session_id: u64::try_from(self.session_id).ok(),
            role: role_of(&self.read_only),
            ..ServerInfo::default()
        }
    }
}

/// What [`ROLE_SQL`](super::role::ROLE_SQL) returns: the role check of a
/// pooled connection, sync or async.
#[derive(QueryableByName)]
pub(super) struct Role {
    #[diesel(sql_type = Text)]
    read_only: String,
}

impl Role {
    pub(super) fn role(self) -> ServerRole {
        role_of(&self.read_only)
    }
}

/// `read_only` is the role of a MariaDB/MySQL server: replicas run with it.
fn role_of(read_only: &str) -> ServerRole {
    let read_only = super::role::is_read_only(read_only);
    ServerRole {
        read_only,
        replica: read_only,
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
    #[diesel(sql_type = Nullable<Text>)]
    host: Option<String>,
    #[diesel(sql_type = BigInt)]
    port: i64,
}

/// The client's address as the server sees it, and the server's port.
pub(super) const PORTS_SQL: &str = "SELECT HOST AS host, CAST(@@port AS SIGNED) AS port \
     FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()";

impl Ports {
    /// (client, server) ports; `None` over a unix socket.
    pub(super) fn pair(self) -> Option<(u16, u16)> {
        // HOST is "address:port" over TCP, "localhost" over a unix socket.
        let client = self
            .host
            .as_deref()
            .and_then(|h| h.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok());
        client.zip(u16::try_from(self.port).ok())
    }
}

/// What [`position_sql`](super::role::position_sql) returns: a GTID list
/// (MariaDB) or set (MySQL), empty without a binary log or GTIDs.
#[derive(QueryableByName)]
pub(super) struct Gtid {
    #[diesel(sql_type = Nullable<Text>)]
    gtid: Option<String>,
}

impl Gtid {
    /// The position, if the server reported one.
    pub(super) fn position(self, flavor: Flavor) -> Option<Position> {
        let text = self.gtid.unwrap_or_default();
        // Empty: no binary log, or GTIDs off (MySQL). A text the parser
        // refuses would be a server this code does not know: no position
        // rather than an error after a successful COMMIT.
        match flavor {
            Flavor::Mysql if !text.trim().is_empty() => {
                Position::parse_gtid_set(&text).ok().map(Position::GtidSet)
            }
            Flavor::Mysql => None,
            _ => Position::parse_gtid_list(&text)
                .ok()
                .filter(|list| !list.is_empty())
                .map(Position::Gtid),
        }
    }
}

/// What [`wait_sql`](super::role::wait_sql) returns.
#[derive(QueryableByName)]
pub(super) struct Waited {
    #[diesel(sql_type = Nullable<BigInt>)]
    r: Option<i64>,
}

impl Waited {
    pub(super) fn replay(&self) -> Replay {
        if self.r == Some(0) {
            Replay::Reached
        } else {
            Replay::Behind
        }
    }
}
