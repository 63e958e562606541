//! What the replica, failover and pooler rows need from a server beyond
//! [`TestServer`]: a primary and its replica, promotion, a role switch, and
//! replication lag, for the kit's MariaDB (GTID replication) and PostgreSQL
//! (streaming standby).

use std::net::SocketAddr;
use std::time::Duration;

use db_txn::{db_txn, Pool, TxnConnection};
use db_txn_tests::ProxyProcess;
use diesel::connection::LoadConnection;
use diesel::query_builder::SqlQuery;
use diesel::query_dsl::LoadQuery;
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

use super::ledger::LedgerError;
use super::TestServer;

/// How long a replica may take to catch up in these tests.
const CATCH_UP: Duration = Duration::from_secs(30);

/// How the pool reaches "the primary" across a failover.
pub enum Writer {
    /// A libpq multi-host URL with `target_session_attrs=read-write`.
    MultiHost(String),
    /// A moving address (a VIP or DNS name): a proxy process re-pointed from
    /// the old primary to the new one.
    Moving(ProxyProcess, String),
}

impl Writer {
    pub fn url(&self) -> &str {
        match self {
            Writer::MultiHost(url) | Writer::Moving(_, url) => url,
        }
    }
}

/// A kit server that replicates.
pub trait Replicated: TestServer + Sized {
    /// A new server that can be a primary.
    fn start_primary() -> Self;
    /// A new replica of this server, caught up.
    fn start_replica(&self) -> Self;
    /// SQL whose one column `v` is the port of the server that answers.
    const PORT_SQL: &'static str;
    /// How a pool reaches the writable one of `primary` and `replica`.
    fn writer(primary: &Self, replica: &Self, database: &str) -> Writer;
    /// Every commit acknowledged by the primary from now on is on the
    /// replica too (PostgreSQL: a synchronous standby; MariaDB: the
    /// switchover waits for the replica instead).
    fn durable(primary: &Self);
    /// The primary fails: PostgreSQL: SIGKILL (only where a crash loses no
    /// acknowledged commit, see [`durable`](Self::durable)); MariaDB: it is
    /// made read-only and the replica catches up (a crash would lose what an
    /// asynchronous replica had not received).
    fn fail_primary(primary: &Self, replica: &Self);
    /// The replica takes over from the failed primary, and the writer
    /// follows (PostgreSQL: promotion; MariaDB: the replica stops
    /// replicating, turns writable, and the moving address is re-pointed).
    fn take_over(replica: &Self, writer: &Writer);
    /// The primary is demoted (read-only, kept running) and the replica
    /// takes over; the writer follows.
    fn demote_over(primary: &Self, replica: &Self, writer: &Writer);
    /// The replica stops applying (it keeps receiving): replication lag.
    fn pause_replication(&self);
    fn resume_replication(&self);
    /// This replica stops replicating and takes writes.
    fn promote(&self);
    /// Waits until this replica shows everything `primary` committed.
    fn caught_up_with(&self, primary: &Self) -> bool;
    /// Client connections to `database` (replication threads not counted).
    fn clients(&self, database: &str) -> i64;
    /// What the server's sessions are doing (transactions, lock waits,
    /// statements), for a failing test's message.
    fn activity(&self) -> String;
    /// URL of `database` on this server.
    fn url_for(&self, database: &str) -> String {
        self.url_via_port(database, self.port())
    }
    /// A `read_only` call: the port of the server that answered, and how
    /// many times `op` is in its ledger.
    fn look(pool: &Pool<Self::Conn>, op: &str) -> Result<(i64, i64), LedgerError>;
    /// The port of the server a call that is not `read_only` runs on.
    fn writer_port(pool: &Pool<Self::Conn>) -> Result<i64, LedgerError>;
}

/// One column `v`.
#[derive(QueryableByName)]
pub struct V {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    v: i64,
}

pub fn one<C>(conn: &mut C, sql: &str) -> QueryResult<i64>
where
    C: LoadConnection,
    SqlQuery: for<'a> LoadQuery<'a, C, V>,
{
    Ok(diesel::sql_query(sql).get_result::<V>(conn)?.v)
}

/// A read: which server answered, and how many times `op` is in its ledger.
#[db_txn(pool = pool, read_only)]
pub fn look<C>(
    conn: &mut C,
    pool: &Pool<C>,
    port_sql: &str,
    op: &str,
) -> Result<(i64, i64), LedgerError>
where
    C: TxnConnection + LoadConnection,
    SqlQuery: for<'a> LoadQuery<'a, C, V>,
{
    let port = one(conn, port_sql)?;
    let n = one(
        conn,
        &format!("SELECT COUNT(*) AS v FROM ops WHERE op_id = '{op}'"),
    )?;
    Ok((port, n))
}

/// Which server a call that is not `read_only` runs on.
#[db_txn(pool = pool)]
pub fn port_of_writer<C>(conn: &mut C, pool: &Pool<C>, port_sql: &str) -> Result<i64, LedgerError>
where
    C: TxnConnection + LoadConnection,
    SqlQuery: for<'a> LoadQuery<'a, C, V>,
{
    Ok(one(conn, port_sql)?)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[cfg(feature = "postgres")]
impl Replicated for db_txn_tests::Postgres {
    const PORT_SQL: &'static str = "SELECT CAST(inet_server_port() AS BIGINT) AS v";

    fn look(pool: &Pool<Self::Conn>, op: &str) -> Result<(i64, i64), LedgerError> {
        look(pool, Self::PORT_SQL, op)
    }
    fn writer_port(pool: &Pool<Self::Conn>) -> Result<i64, LedgerError> {
        port_of_writer(pool, Self::PORT_SQL)
    }

    fn start_primary() -> Self {
        Self::start().unwrap_or_else(|e| panic!("{e}"))
    }
    fn start_replica(&self) -> Self {
        let standby = self.start_standby().unwrap_or_else(|e| panic!("{e}"));
        assert!(standby.wait_caught_up(self, CATCH_UP));
        standby
    }
    fn writer(primary: &Self, replica: &Self, database: &str) -> Writer {
        Writer::MultiHost(Self::multi_host_url(
            &[primary, replica],
            database,
            "read-write",
        ))
    }
    fn durable(primary: &Self) {
        // After the standby started (it copies ALTER SYSTEM settings, and a
        // promoted standby waiting for a standby of its own would hang).
        primary.exec("ALTER SYSTEM SET synchronous_standby_names = '*'");
        primary.exec("SELECT pg_reload_conf()");
        let sync = "SELECT COUNT(*) FROM pg_stat_replication WHERE sync_state = 'sync'";
        assert!(
            db_txn_tests::process::poll_until(CATCH_UP, || primary.query_i64(sync) == 1),
            "the standby is synchronous"
        );
    }
    fn fail_primary(primary: &Self, _replica: &Self) {
        primary.crash();
    }
    fn take_over(replica: &Self, _writer: &Writer) {
        replica.promote();
    }
    fn demote_over(primary: &Self, replica: &Self, _writer: &Writer) {
        primary.set_read_only(true);
        assert!(replica.wait_caught_up(primary, CATCH_UP));
        replica.promote();
    }
    fn pause_replication(&self) {
        self.pause_replay();
    }
    fn resume_replication(&self) {
        self.resume_replay();
    }
    fn promote(&self) {
        db_txn_tests::Postgres::promote(self);
    }
    fn caught_up_with(&self, primary: &Self) -> bool {
        self.wait_caught_up(primary, CATCH_UP)
    }
    fn clients(&self, database: &str) -> i64 {
        self.connection_count(database)
    }
    fn activity(&self) -> String {
        db_txn_tests::Postgres::activity(self)
    }
}

#[cfg(feature = "mysql")]
impl Replicated for db_txn_tests::MariaDb {
    const PORT_SQL: &'static str = "SELECT CAST(@@port AS SIGNED) AS v";

    fn look(pool: &Pool<Self::Conn>, op: &str) -> Result<(i64, i64), LedgerError> {
        look(pool, Self::PORT_SQL, op)
    }
    fn writer_port(pool: &Pool<Self::Conn>) -> Result<i64, LedgerError> {
        port_of_writer(pool, Self::PORT_SQL)
    }

    fn start_primary() -> Self {
        db_txn_tests::MariaDb::start_primary().unwrap_or_else(|e| panic!("{e}"))
    }
    fn start_replica(&self) -> Self {
        db_txn_tests::MariaDb::start_replica(self).unwrap_or_else(|e| panic!("{e}"))
    }
    fn writer(primary: &Self, _replica: &Self, database: &str) -> Writer {
        let proxy = ProxyProcess::start(addr(primary.port())).unwrap_or_else(|e| panic!("{e}"));
        let url = primary.url_via_port(database, proxy.port());
        Writer::Moving(proxy, url)
    }
    fn durable(_primary: &Self) {}
    fn fail_primary(primary: &Self, replica: &Self) {
        primary.set_read_only(true);
        assert!(replica.wait_caught_up(primary, CATCH_UP));
    }
    fn take_over(replica: &Self, writer: &Writer) {
        Replicated::promote(replica);
        if let Writer::Moving(proxy, _) = writer {
            proxy.retarget(addr(replica.port()));
        }
    }
    fn demote_over(primary: &Self, replica: &Self, writer: &Writer) {
        primary.switchover_to(replica);
        if let Writer::Moving(proxy, _) = writer {
            proxy.retarget(addr(replica.port()));
        }
    }
    fn pause_replication(&self) {
        self.stop_sql_thread();
    }
    fn resume_replication(&self) {
        self.start_sql_thread();
    }
    fn promote(&self) {
        self.detach();
        self.set_read_only(false);
    }
    fn caught_up_with(&self, primary: &Self) -> bool {
        self.wait_caught_up(primary, CATCH_UP)
    }
    fn clients(&self, database: &str) -> i64 {
        self.query_i64(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '{database}' \
             AND ID <> CONNECTION_ID() AND COMMAND NOT IN ('Daemon', 'Killed', 'Slave_IO', \
             'Slave_SQL', 'Slave_worker', 'Binlog Dump')"
        ))
    }
    fn activity(&self) -> String {
        db_txn_tests::MariaDb::activity(self)
    }
}
