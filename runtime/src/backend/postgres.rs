use diesel::{PgConnection, QueryResult};

use super::{Backend, ConnectSettings, ServerInfo, TxnConnection};

impl TxnConnection for PgConnection {
    const BACKEND: Backend = Backend::Postgres;

    fn __on_connect(&mut self, _: &ConnectSettings) -> QueryResult<ServerInfo> {
        // PostgreSQL has no idle limit by default; `idle_session_timeout`
        // (57P05) is classified as a disconnect and pinged for like the rest.
        Ok(ServerInfo::default())
    }
}
