//! Self-tests of the test kit (`tests/kit/`): the throwaway servers and the
//! fault-injecting proxy do what the fault tests rely on.
//!
//! Timings are printed with `[kit-timing]` (see them with `--nocapture`).

#![cfg(all(feature = "mysql", feature = "postgres"))]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use db_txn_tests::{MariaDb, Postgres, Proxy};
use diesel::connection::SimpleConnection;
use diesel::mysql::MysqlConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::BigInt;
use diesel::{Connection, QueryableByName, RunQueryDsl};

/// Long enough for a healthy query, short enough for a fast test.
const STALL: Duration = Duration::from_millis(300);
/// Generous bound for something that must happen.
const SOON: Duration = Duration::from_secs(20);

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    v: i64,
}

fn one<C>(conn: &mut C, sql: &str) -> diesel::QueryResult<i64>
where
    C: Connection,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Row>,
{
    diesel::sql_query(sql).get_result::<Row>(conn).map(|r| r.v)
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    eprintln!("[kit-timing] {what}: {} ms", t.elapsed().as_millis());
    out
}

/// Runs `f` on a thread; asserts it is still blocked after [`STALL`], calls
/// `release`, then asserts `f` finishes and returns its result.
fn blocks_until<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    release: impl FnOnce(),
) -> T {
    let rx = background(f);
    assert!(
        matches!(rx.recv_timeout(STALL), Err(mpsc::RecvTimeoutError::Timeout)),
        "the operation should have been blocked"
    );
    release();
    rx.recv_timeout(SOON)
        .expect("the operation should finish once released")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// URL of `url` with its port replaced by `port` (to go through a proxy).
fn via(url: &str, server_port: u16, port: u16) -> String {
    url.replace(&format!(":{server_port}/"), &format!(":{port}/"))
}

// ---------------------------------------------------------------- MariaDB

#[test]
fn mariadb_starts_answers_and_restarts() {
    let db = timed("MariaDb::start", || {
        MariaDb::start().expect("start MariaDB")
    });
    assert_eq!(db.query_i64("SELECT 1 + 1"), 2);
    let mut conn = MysqlConnection::establish(&db.url()).expect("connect");
    assert_eq!(
        one(&mut conn, "SELECT CAST(41 + 1 AS SIGNED) AS v").unwrap(),
        42
    );

    let pid = db.pid();
    timed("MariaDb::restart", || db.restart());
    assert_ne!(db.pid(), pid, "a new server process");
    assert!(
        one(&mut conn, "SELECT 1 AS v").is_err(),
        "old connection is gone"
    );
    let mut conn = MysqlConnection::establish(&db.url()).expect("connect after restart");
    assert_eq!(one(&mut conn, "SELECT 7 AS v").unwrap(), 7);
}

#[test]
fn mariadb_stop_then_start_again() {
    let db = MariaDb::start().expect("start MariaDB");
    db.exec_in(
        "test",
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)",
    );
    timed("MariaDb::stop", || db.stop());
    assert_eq!(db.pid(), 0);
    assert!(
        MysqlConnection::establish(&db.url()).is_err(),
        "server is down"
    );
    timed("MariaDb::start_again", || db.start_again());
    assert_eq!(db.query_i64_in("test", "SELECT COUNT(*) FROM t"), 1);
}

#[test]
fn mariadb_crash_restart_keeps_commits() {
    let db = MariaDb::start().expect("start MariaDB");
    let mut conn = MysqlConnection::establish(&db.url()).expect("connect");
    conn.batch_execute(
        "CREATE TABLE t (id INT PRIMARY KEY) ENGINE=InnoDB; INSERT INTO t VALUES (1)",
    )
    .unwrap();
    timed("MariaDb::crash_restart", || db.crash_restart());
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM test.t"), 1);
}

#[test]
fn mariadb_freeze_blocks_until_thaw() {
    let db = MariaDb::start().expect("start MariaDB");
    let mut conn = MysqlConnection::establish(&db.url()).expect("connect");
    db.freeze();
    let got = blocks_until(move || one(&mut conn, "SELECT 5 AS v"), || db.thaw());
    assert_eq!(got.unwrap(), 5);
    assert_eq!(db.query_i64("SELECT 1"), 1);
}

#[test]
fn mariadb_kill_connection_breaks_the_victim() {
    let db = MariaDb::shared();
    let url = db.create_database("kill_victim");
    let mut victim = MysqlConnection::establish(&url).expect("connect");
    let mut other = MysqlConnection::establish(&url).expect("connect");
    let id = one(&mut victim, "SELECT CAST(CONNECTION_ID() AS SIGNED) AS v").unwrap();
    let other_id = one(&mut other, "SELECT CAST(CONNECTION_ID() AS SIGNED) AS v").unwrap();
    assert_eq!(
        db.connection_ids("kill_victim"),
        vec![id.min(other_id), id.max(other_id)]
    );
    db.kill_connection(id);
    assert_eq!(db.connection_ids("kill_victim"), vec![other_id]);
    assert!(
        one(&mut victim, "SELECT 1 AS v").is_err(),
        "victim must fail"
    );
    assert_eq!(one(&mut other, "SELECT 1 AS v").unwrap(), 1);
}

#[test]
fn mariadb_connection_count() {
    let db = MariaDb::shared();
    let url = db.create_database("count_me");
    assert_eq!(db.connection_count("count_me"), 0);
    let a = MysqlConnection::establish(&url).expect("connect");
    let b = MysqlConnection::establish(&url).expect("connect");
    assert_eq!(db.connection_count("count_me"), 2);
    drop(a);
    assert_eq!(db.wait_connection_count("count_me", 1, SOON), 1);
    drop(b);
    assert_eq!(db.wait_connection_count("count_me", 0, SOON), 0);
}

// ------------------------------------------------------------- PostgreSQL

#[test]
fn postgres_starts_answers_and_restarts() {
    let db = timed("Postgres::start", || {
        Postgres::start().expect("start PostgreSQL")
    });
    assert_eq!(db.query_i64("SELECT 1 + 1"), 2);
    let mut conn = PgConnection::establish(&db.url()).expect("connect");
    assert_eq!(
        one(&mut conn, "SELECT CAST(42 AS BIGINT) AS v").unwrap(),
        42
    );

    let pid = db.pid();
    timed("Postgres::restart", || db.restart());
    assert_ne!(db.pid(), pid, "a new postmaster");
    assert!(
        one(&mut conn, "SELECT 1::bigint AS v").is_err(),
        "old connection is gone"
    );
    let mut conn = PgConnection::establish(&db.url()).expect("connect after restart");
    assert_eq!(one(&mut conn, "SELECT 7::bigint AS v").unwrap(), 7);
}

#[test]
fn postgres_stop_then_start_again() {
    let db = Postgres::start().expect("start PostgreSQL");
    let mut conn = PgConnection::establish(&db.url()).expect("connect");
    conn.batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .unwrap();
    timed("Postgres::stop", || db.stop());
    assert_eq!(db.pid(), 0);
    assert!(
        PgConnection::establish(&db.url()).is_err(),
        "server is down"
    );
    timed("Postgres::start_again", || db.start_again());
    assert_eq!(db.query_i64_in("test", "SELECT COUNT(*) FROM t"), 1);
}

#[test]
fn postgres_crash_restart_keeps_commits() {
    let db = Postgres::start().expect("start PostgreSQL");
    let mut conn = PgConnection::establish(&db.url()).expect("connect");
    conn.batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .unwrap();
    timed("Postgres::crash_restart", || db.crash_restart());
    let mut conn = PgConnection::establish(&db.url()).expect("connect");
    assert_eq!(one(&mut conn, "SELECT COUNT(*) AS v FROM t").unwrap(), 1);
}

#[test]
fn postgres_freeze_blocks_until_thaw() {
    let db = Postgres::start().expect("start PostgreSQL");
    let mut conn = PgConnection::establish(&db.url()).expect("connect");
    db.freeze();
    let got = blocks_until(
        move || one(&mut conn, "SELECT 5::bigint AS v"),
        || db.thaw(),
    );
    assert_eq!(got.unwrap(), 5);
    assert_eq!(db.query_i64("SELECT 1"), 1);
}

#[test]
fn postgres_kill_connection_breaks_the_victim() {
    let db = Postgres::shared();
    let url = db.create_database("kill_victim");
    let mut victim = PgConnection::establish(&url).expect("connect");
    let mut other = PgConnection::establish(&url).expect("connect");
    let pid = one(&mut victim, "SELECT pg_backend_pid()::bigint AS v").unwrap();
    let other_pid = one(&mut other, "SELECT pg_backend_pid()::bigint AS v").unwrap();
    assert_eq!(
        db.connection_ids("kill_victim"),
        vec![pid.min(other_pid), pid.max(other_pid)]
    );
    db.kill_connection(pid);
    assert_eq!(db.connection_ids("kill_victim"), vec![other_pid]);
    assert!(
        one(&mut victim, "SELECT 1::bigint AS v").is_err(),
        "victim must fail"
    );
    assert_eq!(one(&mut other, "SELECT 1::bigint AS v").unwrap(), 1);
}

#[test]
fn postgres_connection_count() {
    let db = Postgres::shared();
    let url = db.create_database("CountMe");
    assert_eq!(db.connection_count("CountMe"), 0);
    let a = PgConnection::establish(&url).expect("connect");
    let b = PgConnection::establish(&url).expect("connect");
    assert_eq!(db.connection_count("CountMe"), 2);
    drop(a);
    assert_eq!(db.wait_connection_count("CountMe", 1, SOON), 1);
    drop(b);
    assert_eq!(db.wait_connection_count("CountMe", 0, SOON), 0);
}

// ------------------------------------------------------------------ Proxy

/// A TCP echo server; returns its address.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

fn echo(stream: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(msg)?;
    let mut got = vec![0u8; msg.len()];
    stream.read_exact(&mut got)?;
    Ok(got)
}

#[test]
fn proxy_relays_and_counts() {
    let proxy = Proxy::start(echo_server()).unwrap();
    let mut a = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut a, b"hello").unwrap(), b"hello");
    let mut b = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut b, b"world").unwrap(), b"world");
    assert_eq!(proxy.live_connections(), 2);
    drop(a);
    assert!(wait(|| proxy.live_connections() == 1));

    let db = MariaDb::shared();
    let url = db.create_database("proxy_relays");
    let proxy = Proxy::start(addr(db.port())).unwrap();
    let mut conn = MysqlConnection::establish(&via(&url, db.port(), proxy.port())).unwrap();
    assert_eq!(one(&mut conn, "SELECT 3 AS v").unwrap(), 3);
}

#[test]
fn proxy_cut_all_breaks_live_connections() {
    let db = Postgres::shared();
    let url = db.create_database("proxy_cut");
    let proxy = Proxy::start(addr(db.port())).unwrap();
    let proxied = via(&url, db.port(), proxy.port());
    let mut conn = PgConnection::establish(&proxied).unwrap();
    assert_eq!(one(&mut conn, "SELECT 1::bigint AS v").unwrap(), 1);
    proxy.cut_all();
    assert_eq!(proxy.live_connections(), 0);
    assert!(
        one(&mut conn, "SELECT 1::bigint AS v").is_err(),
        "cut connection must fail"
    );
    assert_eq!(
        db.wait_connection_count("proxy_cut", 0, SOON),
        0,
        "server side closed too"
    );
    let mut again = PgConnection::establish(&proxied).expect("new connections work");
    assert_eq!(one(&mut again, "SELECT 2::bigint AS v").unwrap(), 2);
}

#[test]
fn proxy_blackhole_stalls_then_resumes() {
    let proxy = Proxy::start(echo_server()).unwrap();
    let mut live = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut live, b"before").unwrap(), b"before");
    proxy.set_blackhole(true);
    let got = blocks_until(
        move || echo(&mut live, b"during"),
        || proxy.set_blackhole(false),
    );
    assert_eq!(got.unwrap(), b"during");

    // A database connection, and a connection opened during the black hole.
    let db = MariaDb::shared();
    let url = db.create_database("proxy_blackhole");
    let proxy = Proxy::start(addr(db.port())).unwrap();
    let proxied = via(&url, db.port(), proxy.port());
    let mut conn = MysqlConnection::establish(&proxied).unwrap();
    proxy.set_blackhole(true);
    let query = background(move || one(&mut conn, "SELECT 4 AS v"));
    let fresh = background(move || MysqlConnection::establish(&proxied).map(drop));
    assert!(query.recv_timeout(STALL).is_err(), "query must stall");
    assert!(
        fresh.recv_timeout(STALL).is_err(),
        "new connection must stall"
    );
    assert_eq!(
        db.connection_count("proxy_blackhole"),
        1,
        "it did not reach the server"
    );
    proxy.set_blackhole(false);
    assert_eq!(query.recv_timeout(SOON).unwrap().unwrap(), 4);
    fresh
        .recv_timeout(SOON)
        .unwrap()
        .expect("new connection completes");
}

/// Runs `f` on a thread; its result arrives on the returned channel.
fn background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

#[test]
fn proxy_cut_after_commit_mariadb() {
    let db = MariaDb::shared();
    let url = db.create_database("proxy_commit");
    db.exec("CREATE TABLE proxy_commit.t (id INT PRIMARY KEY) ENGINE=InnoDB");
    let proxy = Proxy::start(addr(db.port())).unwrap();
    let mut conn = MysqlConnection::establish(&via(&url, db.port(), proxy.port())).unwrap();
    proxy.cut_after_commit();
    let result = conn.transaction::<_, diesel::result::Error, _>(|c| {
        c.batch_execute("INSERT INTO t VALUES (1)")
    });
    assert!(result.is_err(), "the client never got the OK of its COMMIT");
    assert!(!proxy.commit_cut_pending());
    assert_eq!(
        db.query_i64("SELECT COUNT(*) FROM proxy_commit.t"),
        1,
        "yet it committed"
    );
}

#[test]
fn proxy_cut_after_commit_postgres() {
    let db = Postgres::shared();
    let url = db.create_database("proxy_commit");
    let mut admin = PgConnection::establish(&url).unwrap();
    admin
        .batch_execute("CREATE TABLE t (id INT PRIMARY KEY)")
        .unwrap();
    let proxy = Proxy::start(addr(db.port())).unwrap();
    let mut conn = PgConnection::establish(&via(&url, db.port(), proxy.port())).unwrap();
    proxy.cut_after_commit();
    let result = conn.transaction::<_, diesel::result::Error, _>(|c| {
        c.batch_execute("INSERT INTO t VALUES (1)")
    });
    assert!(result.is_err(), "the client never got the OK of its COMMIT");
    assert!(!proxy.commit_cut_pending());
    assert_eq!(
        one(&mut admin, "SELECT COUNT(*) AS v FROM t").unwrap(),
        1,
        "yet it committed"
    );
}

fn wait(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + SOON;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}
