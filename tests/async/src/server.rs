//! The kit's MariaDB and PostgreSQL as the async tests see them. The kit's
//! own calls are blocking and quick (an admin connection, a signal): the
//! tests make them from the runtime's worker threads.

use std::time::Duration;

use db_txn::AsyncTxnConnection;
use diesel_async::{AsyncMysqlConnection, AsyncPgConnection};

/// A throwaway server of the kit, driven through diesel-async.
pub trait AsyncServer: Sync + 'static {
    /// The diesel-async connection type.
    type Conn: AsyncTxnConnection;
    /// "mariadb" / "postgres", for database names.
    const NAME: &'static str;

    /// Creates `name` afresh; its URL for diesel-async.
    fn create_database(&self, name: &str) -> String;
    /// A URL of `database` through `port` (a proxy's) for diesel-async.
    fn url_via_port(&self, database: &str, port: u16) -> String;
    fn port(&self) -> u16;
    fn exec(&self, sql: &str);
    /// `sql` (one integer) on a fresh kit connection to `database`.
    fn query_i64_in(&self, database: &str, sql: &str) -> i64;
    /// Kill every client connection to `database`.
    fn kill_all(&self, database: &str);
    fn connection_count(&self, database: &str) -> i64;
    fn connection_ids(&self, database: &str) -> Vec<i64>;
    fn restart(&self);
    fn stop(&self);
    fn start_again(&self);
    fn freeze(&self);
    fn thaw(&self);
    /// SIGKILL, without restarting (`start_again` does).
    fn crash(&self);
    /// SQL that makes the server drop this session after `secs` idle.
    fn idle_limit_sql(secs: u32) -> String;
    /// SQL that sleeps `secs` seconds on the server.
    fn sleep_sql(secs: f64) -> String;
    /// SQL that tells this session's id.
    const SESSION_ID_SQL: &'static str;
    /// Sessions on `database` that are in a transaction or running a
    /// statement (not counting the kit's own).
    fn open_transactions(&self, database: &str) -> i64;
}

macro_rules! async_server {
    ($server:ty, $conn:ty, $name:literal, $user_url:literal, $params:literal,
     idle: $idle:expr, sleep: $sleep:expr, id: $id:literal, busy: $busy:literal) => {
        impl AsyncServer for $server {
            type Conn = $conn;
            const NAME: &'static str = $name;
            const SESSION_ID_SQL: &'static str = $id;

            fn create_database(&self, name: &str) -> String {
                self.create_database(name);
                self.url_via_port(name, self.port())
            }
            fn url_via_port(&self, database: &str, port: u16) -> String {
                format!(
                    concat!($user_url, "@127.0.0.1:{}/{}", $params),
                    port, database
                )
            }
            fn port(&self) -> u16 {
                self.port()
            }
            fn exec(&self, sql: &str) {
                self.exec(sql)
            }
            fn query_i64_in(&self, database: &str, sql: &str) -> i64 {
                self.query_i64_in(database, sql)
            }
            fn kill_all(&self, database: &str) {
                for id in self.connection_ids(database) {
                    self.kill_connection(id);
                }
            }
            fn connection_count(&self, database: &str) -> i64 {
                self.connection_count(database)
            }
            fn connection_ids(&self, database: &str) -> Vec<i64> {
                self.connection_ids(database)
            }
            fn restart(&self) {
                self.restart()
            }
            fn stop(&self) {
                self.stop()
            }
            fn start_again(&self) {
                self.start_again()
            }
            fn freeze(&self) {
                self.freeze()
            }
            fn thaw(&self) {
                self.thaw()
            }
            fn crash(&self) {
                self.crash()
            }
            fn idle_limit_sql(secs: u32) -> String {
                let idle: fn(u32) -> String = $idle;
                idle(secs)
            }
            fn sleep_sql(secs: f64) -> String {
                let sleep: fn(f64) -> String = $sleep;
                sleep(secs)
            }
            fn open_transactions(&self, database: &str) -> i64 {
                self.query_i64(&format!($busy, db = database))
            }
        }
    };
}

// mysql_async moves a connection to 127.0.0.1 onto the server's unix socket
// unless told not to: then a proxy in between would see nothing, and the
// pool could not find the connection's TCP socket.
async_server!(
    db_txn_tests::MariaDb,
    AsyncMysqlConnection,
    "mariadb",
    "mysql://root",
    "?prefer_socket=false",
    idle: |secs| format!("SET SESSION wait_timeout = {secs}"),
    sleep: |secs| format!("SELECT SLEEP({secs})"),
    id: "SELECT CAST(CONNECTION_ID() AS SIGNED) AS n",
    busy: "SELECT COUNT(*) FROM information_schema.PROCESSLIST p WHERE p.DB = '{db}' \
           AND p.ID <> CONNECTION_ID() AND (p.COMMAND NOT IN ('Sleep', 'Killed') OR p.ID IN \
           (SELECT trx_mysql_thread_id FROM information_schema.INNODB_TRX))"
);

async_server!(
    db_txn_tests::Postgres,
    AsyncPgConnection,
    "postgres",
    "postgres://postgres",
    "",
    idle: |secs| format!("SET idle_session_timeout = {}", secs * 1000),
    sleep: |secs| format!("SELECT pg_sleep({secs})"),
    id: "SELECT CAST(pg_backend_pid() AS BIGINT) AS n",
    busy: "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{db}' \
           AND pid <> pg_backend_pid() AND backend_type = 'client backend' \
           AND (state <> 'idle' OR xact_start IS NOT NULL)"
);

/// Polls `f` every 20 ms until it holds or `limit` passes; whether it held.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
