//! `PgConnection`: what the pool reads from the server at connect.

use diesel::sql_types::{Integer, Nullable};
use diesel::{PgConnection, QueryResult, QueryableByName, RunQueryDsl};

use super::super::{Backend, Driver, TxnConnection};
use super::Postgres;

#[derive(QueryableByName)]
struct Ports {
    #[diesel(sql_type = Nullable<Integer>)]
    client: Option<i32>,
    #[diesel(sql_type = Nullable<Integer>)]
    server: Option<i32>,
}

impl TxnConnection for PgConnection {
    const BACKEND: Backend = Backend::Postgres;
}

impl Driver for PgConnection {
    type Dialect = Postgres;

    fn socket_ports(&mut self) -> QueryResult<Option<(u16, u16)>> {
        // NULL over a unix socket.
        let p: Ports =
            diesel::sql_query("SELECT inet_client_port() AS client, inet_server_port() AS server")
                .get_result(self)?;
        let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
        Ok(port(p.client).zip(port(p.server)))
    }
}
