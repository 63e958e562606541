//! `PgConnection`: what the pool reads from the server at connect.

use diesel::sql_types::{BigInt, Integer, Nullable};
use diesel::{PgConnection, QueryResult, QueryableByName, RunQueryDsl};

use super::super::{Backend, Driver, ServerInfo, TxnConnection};
use super::{busy_sessions_sql, end_session_sql, Postgres, SERVER_INFO_SQL};

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = Integer)]
    session_id: i32,
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

#[derive(QueryableByName)]
struct Ports {
    #[diesel(sql_type = Nullable<Integer>)]
    client: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    server: Option<i32>,
}

#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
impl TxnConnection for PgConnection {
    const BACKEND: Backend = Backend::Postgres;
}

impl Driver for PgConnection {
    type Dialect = Postgres;

    fn server_info(&mut self) -> QueryResult<ServerInfo> {
        let s: Session = diesel::sql_query(SERVER_INFO_SQL).get_result(self)?;
        Ok(ServerInfo {
            session_id: u64::try_from(s.session_id).ok(),
            ..ServerInfo::default()
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
        // NULL over a unix socket.
        let p: Ports =
            diesel::sql_query("SELECT inet_client_port() AS client, inet_server_port() AS server")
                .get_result(self)?;
        let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
        Ok(port(p.client).zip(port(p.server)))
    }
}
