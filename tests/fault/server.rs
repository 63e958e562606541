//! What the fault matrix needs from a server, for the kit's MariaDB and
//! PostgreSQL.

use std::time::Duration;

use db_txn::{Pool, TxnConnection};
use diesel::{QueryableByName, RunQueryDsl};

/// A throwaway server of the kit, seen by the fault matrix.
pub trait TestServer: Sync {
    /// The diesel connection type.
    type Conn: TxnConnection;
    /// "mariadb" / "postgres", for database names.
    const NAME: &'static str;

    fn create_database(&self, name: &str) -> String;
    fn url_via_port(&self, database: &str, port: u16) -> String;
    fn port(&self) -> u16;
    fn query_i64(&self, sql: &str) -> i64;
    fn exec(&self, sql: &str);
    /// Kill every client connection to `database` (KILL / pg_terminate_backend).
    fn kill_all(&self, database: &str);
    fn connection_count(&self, database: &str) -> i64;
    fn wait_connection_count(&self, database: &str, expected: i64, limit: Duration) -> i64;
    fn restart(&self);
    fn stop(&self);
    fn start_again(&self);
    fn freeze(&self);
    fn thaw(&self);
    /// `SIGKILL` of the server; it stays down until `start_again` (which recovers).
    fn crash(&self);
    /// SQL that makes the server drop this session after `secs` idle.
    fn idle_limit_sql(secs: u32) -> String;
    /// SQL that sleeps `secs` seconds on the server.
    fn sleep_sql(secs: u32) -> String;
    /// The ids of the client connections to `database`.
    fn connection_ids(&self, database: &str) -> Vec<i64>;
    /// `sql` (`SELECT COUNT(*) ...`) on a connection of `pool`.
    fn count(pool: &Pool<Self::Conn>, sql: &str) -> i64;
}

#[derive(QueryableByName)]
struct N {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count<C>(pool: &Pool<C>, sql: &str) -> i64
where
    C: TxnConnection + diesel::connection::LoadConnection,
    diesel::query_builder::SqlQuery: for<'a> diesel::query_dsl::LoadQuery<'a, C, N>,
{
    let mut conn = pool.get().expect("a connection to count with");
    let sql = sql.replacen("SELECT COUNT(*)", "SELECT COUNT(*) AS n", 1);
    diesel::sql_query(sql)
        .get_result::<N>(&mut *conn)
        .expect("count")
        .n
}

/// The same delegation to the kit for both servers; only the SQL differs.
macro_rules! test_server {
    ($server:ty, $conn:ty, $name:literal, $user_url:literal, idle: $idle:expr, sleep: $sleep:expr) => {
        impl TestServer for $server {
            type Conn = $conn;
            const NAME: &'static str = $name;

            fn create_database(&self, name: &str) -> String {
                self.create_database(name)
            }
            fn url_via_port(&self, database: &str, port: u16) -> String {
                format!(concat!($user_url, "@127.0.0.1:{}/{}"), port, database)
            }
            fn port(&self) -> u16 {
                self.port()
            }
            fn query_i64(&self, sql: &str) -> i64 {
                self.query_i64(sql)
            }
            fn exec(&self, sql: &str) {
                self.exec(sql)
            }
            fn kill_all(&self, database: &str) {
                for id in self.connection_ids(database) {
                    self.kill_connection(id);
                }
            }
            fn connection_count(&self, database: &str) -> i64 {
                self.connection_count(database)
            }
            fn wait_connection_count(&self, database: &str, expected: i64, limit: Duration) -> i64 {
                self.wait_connection_count(database, expected, limit)
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
            fn sleep_sql(secs: u32) -> String {
                let sleep: fn(u32) -> String = $sleep;
                sleep(secs)
            }
            fn connection_ids(&self, database: &str) -> Vec<i64> {
                self.connection_ids(database)
            }
            fn count(pool: &Pool<Self::Conn>, sql: &str) -> i64 {
                count(pool, sql)
            }
        }
    };
}

#[cfg(feature = "mysql")]
test_server!(
    db_txn_tests::MariaDb,
    diesel::MysqlConnection,
    "mariadb",
    "mysql://root",
    idle: |secs| format!("SET SESSION wait_timeout = {secs}"),
    sleep: |secs| format!("SELECT SLEEP({secs})")
);

#[cfg(feature = "postgres")]
test_server!(
    db_txn_tests::Postgres,
    diesel::PgConnection,
    "postgres",
    "postgres://postgres",
    idle: |secs| format!("SET idle_session_timeout = {}", secs * 1000),
    sleep: |secs| format!("SELECT pg_sleep({secs})")
);
