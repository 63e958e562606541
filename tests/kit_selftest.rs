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

use db_txn_tests::{proctree, MariaDb, Pgbouncer, Postgres, Proxy, ProxyProcess};
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

/// Ends the holder's transaction: the waiter must then get the lock.
fn release(
    holder: &mut impl SimpleConnection,
    waiter: mpsc::Receiver<diesel::QueryResult<()>>,
    report: &str,
) {
    holder.batch_execute("ROLLBACK").unwrap();
    let waited = waiter.recv_timeout(SOON).expect("the waiter ends");
    assert!(
        waited.is_ok(),
        "the waiter did not get the lock ({waited:?}); the report:\n{report}"
    );
}

/// The line of `report` about `whom`, found by `is`; a failure shows the
/// report.
fn line<'r>(report: &'r str, whom: &str, is: impl Fn(&str) -> bool) -> &'r str {
    report
        .lines()
        .find(|l| is(l))
        .unwrap_or_else(|| panic!("no line for the {whom}:\n{report}"))
}

/// Polls `report` until one of its lines holds every string in `wanted`
/// (at most [`SOON`]); returns the last report. All on one line: PostgreSQL
/// shows a lock wait in `pg_blocking_pids` a moment before the waiter's
/// wait event is set, so both are waited for together. A quarter of a
/// second apart: InnoDB refreshes what `information_schema.INNODB_TRX` and
/// `INNODB_LOCK_WAITS` show only when they were not read for 0.1 s, so
/// faster polling would read the first snapshot again and again.
fn report_with(report: impl Fn() -> String, wanted: &[&str]) -> String {
    let deadline = Instant::now() + SOON;
    loop {
        let text = report();
        let seen = text
            .lines()
            .any(|line| wanted.iter().all(|part| line.contains(part)));
        if seen || Instant::now() > deadline {
            return text;
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// A lock queue on `db` through `url`: table `t` with rows 1 and 2, a holder
/// that updated row 1 in a transaction it keeps open, and a waiter (on a
/// thread; InnoDB gives up on its lock after `wait_s` seconds) updating row
/// 1 behind it. Returns them with the activity report once it shows the
/// wait (or after [`SOON`]).
fn mariadb_lock_queue(
    db: &MariaDb,
    url: &str,
    wait_s: u32,
) -> (
    MysqlConnection,
    mpsc::Receiver<diesel::QueryResult<()>>,
    String,
) {
    let mut holder = MysqlConnection::establish(url).expect("connect");
    holder
        .batch_execute(
            "CREATE TABLE t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; \
             INSERT INTO t VALUES (1, 0), (2, 0)",
        )
        .unwrap();
    holder
        .batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
        .unwrap();
    let url = url.to_owned();
    let waiter = background(move || {
        let mut conn = MysqlConnection::establish(&url).expect("connect");
        conn.batch_execute(&format!("SET SESSION innodb_lock_wait_timeout = {wait_s}"))
            .unwrap();
        conn.batch_execute("UPDATE t SET v = 2 WHERE id = 1")
    });
    let report = report_with(|| db.activity(), &["waits for trx "]);
    (holder, waiter, report)
}

#[test]
fn mariadb_activity_names_the_holder_of_a_lock() {
    let db = MariaDb::shared();
    let url = db.create_database("activity");
    let (mut holder, waiter, report) = mariadb_lock_queue(db, &url, 120);
    let holder_id = one(&mut holder, "SELECT CAST(CONNECTION_ID() AS SIGNED) AS v").unwrap();
    release(&mut holder, waiter, &report);
    let holder_line = line(&report, "holder", |l| {
        l.starts_with(&format!("session {holder_id} |"))
    });
    let waiter_line = line(&report, "waiter", |l| l.contains("UPDATE t SET v = 2"));
    let blocking = waiter_line
        .split("waits for trx ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("the waiter waits for nothing:\n{report}"));
    assert!(
        holder_line.contains(&format!("trx {blocking} RUNNING"))
            && holder_line.contains("1 rows locked"),
        "the holder's line names another transaction, or no lock:\n{report}"
    );
}

// ------------------------------------------------------------- PostgreSQL

#[test]
fn postgres_activity_names_the_holder_of_a_lock() {
    let db = Postgres::shared();
    let url = db.create_database("activity");
    let mut holder = PgConnection::establish(&url).expect("connect");
    holder
        .batch_execute("CREATE TABLE t (id INT PRIMARY KEY, v INT); INSERT INTO t VALUES (1, 0)")
        .unwrap();
    holder
        .batch_execute("BEGIN; UPDATE t SET v = 1 WHERE id = 1")
        .unwrap();
    let pid = one(&mut holder, "SELECT CAST(pg_backend_pid() AS BIGINT) AS v").unwrap();
    let waiter = background(move || {
        let mut conn = PgConnection::establish(&url).expect("connect");
        conn.batch_execute("SET lock_timeout = '120s'; UPDATE t SET v = 2 WHERE id = 1")
    });
    let blocked = format!("blocked by {{{pid}}}");
    let report = report_with(|| db.activity(), &[&blocked, "waits on Lock:"]);
    release(&mut holder, waiter, &report);
    let waiter_line = line(&report, "waiter", |l| l.contains("UPDATE t SET v = 2"));
    assert!(
        waiter_line.contains(&blocked) && waiter_line.contains("waits on Lock:"),
        "the waiter's line does not name the holder:\n{report}"
    );
    let holder_line = line(&report, "holder", |l| {
        l.starts_with(&format!("pid {pid} |"))
    });
    assert!(
        holder_line.contains("idle in transaction | client backend | transaction since "),
        "the holder's line:\n{report}"
    );
}

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

// ---------------------------------------------------- ProxyProcess (faults)

/// How a connection that a [`recording_server`] accepted ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The peer closed it (FIN).
    Eof,
    /// The peer reset it (RST).
    Reset,
    Other(std::io::ErrorKind),
}

/// An echo server that reports each connection it accepts (its peer's
/// address) and how the connection ended.
fn recording_server() -> (
    SocketAddr,
    mpsc::Receiver<SocketAddr>,
    mpsc::Receiver<Ended>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = mpsc::channel();
    let (ended_tx, ended) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = accepted_tx.send(stream.peer_addr().unwrap());
            let ended_tx = ended_tx.clone();
            thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 1024];
                let end = loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break Ended::Eof,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                break Ended::Other(std::io::ErrorKind::BrokenPipe);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                            break Ended::Reset
                        }
                        Err(e) => break Ended::Other(e.kind()),
                    }
                };
                let _ = ended_tx.send(end);
            });
        }
    });
    (addr, accepted, ended)
}

/// How reading `stream` ends now (with a time limit).
fn read_end(stream: &mut TcpStream) -> Ended {
    stream.set_read_timeout(Some(SOON)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => Ended::Eof,
        Ok(n) => panic!("unexpected {n} bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ended::Reset,
        Err(e) => Ended::Other(e.kind()),
    }
}

/// The inode of the TCP socket from `local` to `remote` (IPv4 127.0.0.1),
/// from `/proc/net/tcp`. Both ends: Linux gives two connections to
/// different peers the same ephemeral port (ours to the proxy and the
/// proxy's to the server may share one).
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<String> {
    let end = |a: SocketAddr| format!("0100007F:{:04X}", a.port());
    let (local, remote) = (end(local), end(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&local.as_str()) && fields.get(2) == Some(&remote.as_str()))
            .then(|| fields.get(9).map(|s| s.to_string()))
            .flatten()
    })
}

/// Whether process `pid` has the socket `inode` open.
fn has_socket(pid: u32, inode: &str) -> bool {
    let target = format!("socket:[{inode}]");
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&target)))
    })
}

#[test]
fn proxy_process_relays_from_another_process() {
    let (upstream, accepted, _) = recording_server();
    let proxy = timed("ProxyProcess::start", || {
        ProxyProcess::start(upstream).expect("start the proxy process")
    });
    let pid = proxy.pid();
    assert_ne!(pid, std::process::id());
    assert!(
        proctree::proc_info(pid).is_some(),
        "the proxy runs as pid {pid}"
    );
    let mut a = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut a, b"hello").unwrap(), b"hello");
    // The server's peer is a socket of the proxy process, not of ours.
    let seen = accepted.recv_timeout(SOON).unwrap();
    let inode = socket_inode(seen, upstream).expect("the proxy's upstream socket");
    assert!(has_socket(pid, &inode), "held by the proxy process");
    assert!(!has_socket(std::process::id(), &inode), "not by us");
    let mut b = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut b, b"world").unwrap(), b"world");
    let s = proxy.stats();
    assert_eq!((s.open, s.accepted, s.blackholed), (2, 2, 0), "{s:?}");
    assert_eq!(s.upstream, upstream);
    drop(a);
    assert!(wait(|| proxy.live_connections() == 1));
    drop(proxy);
    assert!(
        wait(|| proctree::proc_info(pid).is_none()),
        "the proxy process is gone with its handle"
    );
}

#[test]
fn proxy_process_cuts_with_fin_or_reset() {
    let (upstream, _, ended) = recording_server();
    let proxy = ProxyProcess::start(upstream).unwrap();
    let mut a = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut a, b"a").unwrap(), b"a");
    assert_eq!(proxy.cut_all(), 1);
    assert_eq!(proxy.live_connections(), 0, "closed when cut_all returns");
    assert_eq!(read_end(&mut a), Ended::Eof, "client side");
    assert_eq!(ended.recv_timeout(SOON).unwrap(), Ended::Eof, "server side");

    let mut b = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut b, b"b").unwrap(), b"b", "new connections work");
    assert_eq!(proxy.reset_all(), 1);
    assert_eq!(read_end(&mut b), Ended::Reset, "client side");
    assert_eq!(
        ended.recv_timeout(SOON).unwrap(),
        Ended::Reset,
        "server side"
    );
}

#[test]
fn proxy_process_blackholes_existing_connections_until_lifted() {
    let (upstream, accepted, _) = recording_server();
    let proxy = ProxyProcess::start(upstream).unwrap();
    let mut old = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut old, b"before").unwrap(), b"before");
    accepted.recv_timeout(SOON).unwrap();
    assert_eq!(proxy.blackhole_existing(), 1);
    let held = background(move || echo(&mut old, b"held").map(|r| (r, old)));
    assert!(held.recv_timeout(STALL).is_err(), "nothing crosses");
    let mut fresh = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut fresh, b"new").unwrap(), b"new", "new ones work");
    let s = proxy.stats();
    assert_eq!((s.open, s.blackholed), (2, 1), "{s:?}");
    proxy.lift_blackhole();
    let (reply, _old) = held.recv_timeout(SOON).unwrap().unwrap();
    assert_eq!(reply, b"held", "held bytes are delivered once lifted");
}

#[test]
fn proxy_process_blackhole_all_holds_new_connections() {
    let (upstream, accepted, _) = recording_server();
    let proxy = ProxyProcess::start(upstream).unwrap();
    let mut old = TcpStream::connect(proxy.addr()).unwrap();
    assert_eq!(echo(&mut old, b"x").unwrap(), b"x");
    accepted.recv_timeout(SOON).unwrap();
    proxy.blackhole_all();
    let mut fresh = TcpStream::connect(proxy.addr()).expect("accepted all the same");
    let fresh_echo = background(move || echo(&mut fresh, b"y"));
    let old_echo = background(move || echo(&mut old, b"z"));
    assert!(fresh_echo.recv_timeout(STALL).is_err(), "new: no answer");
    assert!(old_echo.recv_timeout(STALL).is_err(), "old: no answer");
    assert!(
        accepted.try_recv().is_err(),
        "the new connection did not reach the server"
    );
    assert_eq!(proxy.stats().blackholed, 2);

    // A database client: MariaDB speaks first, so the client waits.
    let db = MariaDb::shared();
    let url = db.create_database("pp_blackhole_all");
    let proxy = ProxyProcess::start(addr(db.port())).unwrap();
    proxy.blackhole_all();
    let proxied = via(&url, db.port(), proxy.port());
    let connecting = background(move || MysqlConnection::establish(&proxied).map(drop));
    assert!(connecting.recv_timeout(STALL).is_err(), "connect hangs");
    proxy.lift_blackhole();
    connecting
        .recv_timeout(SOON)
        .unwrap()
        .expect("connects once lifted");
}

#[test]
fn proxy_process_retargets_new_connections() {
    let a = MariaDb::shared();
    let b = MariaDb::start().unwrap();
    let proxy = ProxyProcess::start(addr(a.port())).unwrap();
    let url = format!("mysql://root@127.0.0.1:{}/test", proxy.port());
    let port_of = |c: &mut MysqlConnection| one(c, "SELECT CAST(@@port AS SIGNED) AS v").unwrap();
    let mut before = MysqlConnection::establish(&url).unwrap();
    assert_eq!(port_of(&mut before), i64::from(a.port()));
    proxy.retarget(addr(b.port()));
    let mut after = MysqlConnection::establish(&url).unwrap();
    assert_eq!(
        port_of(&mut after),
        i64::from(b.port()),
        "new: other server"
    );
    assert_eq!(port_of(&mut before), i64::from(a.port()), "old: stays");
    assert_eq!(proxy.stats().upstream, addr(b.port()));
}

/// Runs `INSERT INTO t VALUES (id)` and a COMMIT on `conn`; with
/// `extended`, the COMMIT goes through PostgreSQL's extended protocol.
fn insert_and_commit<C: Connection>(
    conn: &mut C,
    id: i64,
    extended: bool,
) -> diesel::QueryResult<()>
where
    diesel::query_builder::SqlQuery: diesel::query_dsl::methods::ExecuteDsl<C>,
{
    conn.batch_execute("BEGIN")?;
    conn.batch_execute(&format!("INSERT INTO t VALUES ({id})"))?;
    if extended {
        diesel::sql_query("COMMIT").execute(conn).map(drop)
    } else {
        conn.batch_execute("COMMIT")
    }
}

#[test]
fn proxy_process_commit_faults_mariadb() {
    let db = MariaDb::shared();
    let url = db.create_database("pp_commit");
    db.exec("CREATE TABLE pp_commit.t (id INT PRIMARY KEY) ENGINE=InnoDB");
    let proxy = ProxyProcess::start(addr(db.port())).unwrap();
    let proxied = via(&url, db.port(), proxy.port());
    let count =
        |id: i64| db.query_i64(&format!("SELECT COUNT(*) FROM pp_commit.t WHERE id = {id}"));

    let mut conn = MysqlConnection::establish(&proxied).unwrap();
    proxy.drop_commit();
    assert!(proxy.commit_fault_pending());
    assert!(insert_and_commit(&mut conn, 1, false).is_err(), "link cut");
    assert!(!proxy.commit_fault_pending());
    assert_eq!(db.wait_connection_count("pp_commit", 0, SOON), 0);
    assert_eq!(count(1), 0, "the COMMIT never arrived: rolled back");

    let mut conn = MysqlConnection::establish(&proxied).unwrap();
    proxy.cut_after_commit();
    assert!(insert_and_commit(&mut conn, 2, false).is_err(), "no reply");
    assert!(!proxy.commit_fault_pending());
    assert_eq!(count(2), 1, "the COMMIT arrived: committed");

    let mut conn = MysqlConnection::establish(&proxied).unwrap();
    insert_and_commit(&mut conn, 3, false).expect("disarmed: works");
    assert_eq!(count(3), 1);
}

#[test]
fn proxy_process_commit_faults_postgres() {
    let db = Postgres::shared();
    let url = db.create_database("pp_commit");
    db.exec_in("pp_commit", "CREATE TABLE t (id INT PRIMARY KEY)");
    let proxy = ProxyProcess::start(addr(db.port())).unwrap();
    let proxied = via(&url, db.port(), proxy.port());
    let count = |id: i64| {
        db.query_i64_in(
            "pp_commit",
            &format!("SELECT COUNT(*) FROM t WHERE id = {id}"),
        )
    };

    for (id, extended) in [(10, false), (20, true)] {
        let mut conn = PgConnection::establish(&proxied).unwrap();
        proxy.drop_commit();
        assert!(insert_and_commit(&mut conn, id, extended).is_err());
        assert!(!proxy.commit_fault_pending(), "extended: {extended}");
        assert_eq!(db.wait_connection_count("pp_commit", 0, SOON), 0);
        assert_eq!(count(id), 0, "dropped COMMIT rolled back ({extended})");

        let mut conn = PgConnection::establish(&proxied).unwrap();
        proxy.cut_after_commit();
        assert!(insert_and_commit(&mut conn, id + 1, extended).is_err());
        assert!(!proxy.commit_fault_pending(), "extended: {extended}");
        assert_eq!(count(id + 1), 1, "cut-after COMMIT committed ({extended})");
    }
    // Other extended-protocol statements do not set it off.
    let mut conn = PgConnection::establish(&proxied).unwrap();
    proxy.drop_commit();
    assert_eq!(one(&mut conn, "SELECT 1::bigint AS v").unwrap(), 1);
    assert!(proxy.commit_fault_pending(), "a SELECT is not a COMMIT");
    assert!(
        insert_and_commit(&mut conn, 30, false).is_err(),
        "the COMMIT is the one dropped"
    );
    assert_eq!(count(30), 0);
}

/// A cut-after-`COMMIT` fault stays pending until the server has answered
/// the `COMMIT`: a test that waits for it and then crashes the server
/// cannot undo the commit. Here a deferred trigger makes the `COMMIT` take
/// a second on the server.
#[test]
fn proxy_process_cut_after_commit_pends_until_the_reply() {
    let db = Postgres::shared();
    let url = db.create_database("pp_slow_commit");
    db.exec_in(
        "pp_slow_commit",
        "CREATE TABLE t (id INT PRIMARY KEY); \
         CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON t \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow()",
    );
    let proxy = ProxyProcess::start(addr(db.port())).unwrap();
    let proxied = via(&url, db.port(), proxy.port());
    let mut conn = PgConnection::establish(&proxied).unwrap();
    proxy.cut_after_commit();
    let call = background(move || insert_and_commit(&mut conn, 1, false));
    let committing = "SELECT COUNT(*) FROM pg_stat_activity \
                      WHERE query = 'COMMIT' AND state = 'active'";
    let started = Instant::now();
    while db.query_i64_in("pp_slow_commit", committing) == 0 {
        assert!(
            started.elapsed() < SOON,
            "the COMMIT never reached the server"
        );
        thread::sleep(Duration::from_millis(10));
    }
    assert!(
        proxy.commit_fault_pending(),
        "the server is still in the COMMIT: the fault has not fired"
    );
    let ended = call.recv_timeout(SOON).expect("the call ends");
    assert!(ended.is_err(), "the reply was swallowed: {ended:?}");
    assert!(!proxy.commit_fault_pending(), "the reply came: fired");
    let count = db.query_i64_in("pp_slow_commit", "SELECT COUNT(*) FROM t WHERE id = 1");
    assert_eq!(count, 1, "committed");
}

/// `hold_commit`: the server's session waits in its transaction (the row
/// invisible to others) until the black hole is lifted, which delivers the
/// COMMIT.
fn hold_commit_then_lift<C: Connection + Send>(
    proxy: &ProxyProcess,
    mut conn: C,
    count: &dyn Fn() -> i64,
) where
    diesel::query_builder::SqlQuery: diesel::query_dsl::methods::ExecuteDsl<C>,
{
    proxy.hold_commit();
    thread::scope(|s| {
        let committing = s.spawn(move || insert_and_commit(&mut conn, 40, false));
        assert!(wait(|| !proxy.commit_fault_pending()), "the COMMIT came");
        assert_eq!(proxy.stats().blackholed, 1);
        thread::sleep(Duration::from_millis(300));
        assert!(!committing.is_finished(), "no answer while held");
        assert_eq!(count(), 0, "not committed while held");
        proxy.lift_blackhole();
        committing
            .join()
            .unwrap()
            .expect("committed once delivered");
    });
    assert_eq!(count(), 1);
}

#[test]
fn proxy_process_hold_commit() {
    let db = MariaDb::shared();
    let url = db.create_database("pp_hold");
    db.exec("CREATE TABLE pp_hold.t (id INT PRIMARY KEY) ENGINE=InnoDB");
    let proxy = ProxyProcess::start(addr(db.port())).unwrap();
    let conn = MysqlConnection::establish(&via(&url, db.port(), proxy.port())).unwrap();
    hold_commit_then_lift(&proxy, conn, &|| {
        db.query_i64("SELECT COUNT(*) FROM pp_hold.t WHERE id = 40")
    });

    let db = Postgres::shared();
    let url = db.create_database("pp_hold");
    db.exec_in("pp_hold", "CREATE TABLE t (id INT PRIMARY KEY)");
    let proxy = ProxyProcess::start(addr(db.port())).unwrap();
    let conn = PgConnection::establish(&via(&url, db.port(), proxy.port())).unwrap();
    hold_commit_then_lift(&proxy, conn, &|| {
        db.query_i64_in("pp_hold", "SELECT COUNT(*) FROM t WHERE id = 40")
    });
}

/// This test binary running only the test `name`, as a child process with
/// `DB_TXN_KIT_CHILD` set (see [`in_child_test`]).
fn child_test(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", name, "--nocapture"])
        .env("DB_TXN_KIT_CHILD", "1");
    command
}

/// Whether this process is a [`child_test`].
fn in_child_test() -> bool {
    std::env::var_os("DB_TXN_KIT_CHILD").is_some()
}

/// Under `DB_TXN_KIT_CHILD`, the body of the child process that
/// [`proxy_process_dies_with_the_test_process`] kills.
fn child_starts_a_proxy_and_waits() {
    let proxy = ProxyProcess::start(echo_server()).unwrap();
    println!("PROXY_PID {}", proxy.pid());
    loop {
        thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn proxy_process_dies_with_the_test_process() {
    if in_child_test() {
        return child_starts_a_proxy_and_waits();
    }
    let mut child = child_test("proxy_process_dies_with_the_test_process")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let pid: u32 = std::io::BufRead::lines(out)
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("PROXY_PID ").map(|p| p.parse().unwrap()))
        .expect("the child reports its proxy's pid");
    assert!(proctree::proc_info(pid).is_some(), "proxy {pid} runs");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait(|| proctree::proc_info(pid).is_none()),
        "proxy {pid} is gone with the SIGKILLed test process"
    );
}

/// A test that fails while a kit server runs prints the tail of the
/// server's log (its directory, log included, is gone afterwards).
#[test]
fn failing_test_prints_the_server_log() {
    if in_child_test() {
        let db = MariaDb::start().unwrap();
        println!("MARIADB_PORT {}", db.port());
        panic!("the child test fails with its server running");
    }
    let out = child_test("failing_test_prints_the_server_log")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child failed: {stdout}");
    let port = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MARIADB_PORT "))
        .expect("the child reports its server's port");
    let header = format!("--- MariaDB on port {port} (");
    let tail = stderr
        .split_once(&header)
        .unwrap_or_else(|| panic!("no log tail of the server in:\n{stderr}"))
        .1;
    // mariadbd's own line, from the log the kit keeps.
    assert!(tail.contains("ready for connections"), "{tail}");
}

// ------------------------------------------- PostgreSQL primary + standby

fn inet_server_port(conn: &mut PgConnection) -> i64 {
    one(conn, "SELECT inet_server_port()::bigint AS v").unwrap()
}

fn is_read_only_error(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ReadOnlyTransaction,
            _
        )
    )
}

#[test]
fn postgres_standby_replicates_lags_and_is_read_only() {
    let primary = Postgres::start().unwrap();
    let standby = timed("Postgres::start_standby", || {
        primary.start_standby().expect("start a standby")
    });
    assert!(standby.is_in_recovery() && !primary.is_in_recovery());
    primary.exec_in("test", "CREATE TABLE t (id INT); INSERT INTO t VALUES (1)");
    assert!(standby.wait_caught_up(&primary, SOON));
    assert_eq!(standby.query_i64_in("test", "SELECT COUNT(*) FROM t"), 1);
    let mut on_standby = PgConnection::establish(&standby.url()).unwrap();
    let err = on_standby
        .batch_execute("INSERT INTO t VALUES (9)")
        .unwrap_err();
    assert!(is_read_only_error(&err), "{err:?}");

    standby.pause_replay();
    primary.exec_in("test", "INSERT INTO t VALUES (2)");
    let lsn = primary.current_wal_lsn();
    assert!(!standby.wait_replayed(lsn, STALL), "paused: lags");
    assert_eq!(standby.query_i64_in("test", "SELECT COUNT(*) FROM t"), 1);
    standby.resume_replay();
    assert!(standby.wait_replayed(lsn, SOON));
    assert!(standby.replay_lsn() >= lsn);
    assert_eq!(standby.query_i64_in("test", "SELECT COUNT(*) FROM t"), 2);

    // A VIP moving from the primary to the standby.
    let proxy = ProxyProcess::start(addr(primary.port())).unwrap();
    let url = via(&primary.url(), primary.port(), proxy.port());
    let mut before = PgConnection::establish(&url).unwrap();
    assert_eq!(inet_server_port(&mut before), i64::from(primary.port()));
    proxy.retarget(addr(standby.port()));
    let mut after = PgConnection::establish(&url).unwrap();
    assert_eq!(inet_server_port(&mut after), i64::from(standby.port()));
    assert_eq!(inet_server_port(&mut before), i64::from(primary.port()));
}

#[test]
fn postgres_fence_crash_and_promote() {
    let primary = Postgres::start().unwrap();
    let standby = primary.start_standby().unwrap();
    primary.exec_in("test", "CREATE TABLE t (id INT)");
    let mut client = PgConnection::establish(&primary.url()).unwrap();
    client.batch_execute("INSERT INTO t VALUES (1)").unwrap();

    timed("Postgres::set_read_only", || primary.set_read_only(true));
    let err = client
        .batch_execute("INSERT INTO t VALUES (2)")
        .unwrap_err();
    assert!(is_read_only_error(&err), "idle session fenced: {err:?}");
    let writable = Postgres::multi_host_url(&[&primary, &standby], "test", "read-write");
    assert!(
        PgConnection::establish(&writable).is_err(),
        "no writable server: both are read-only"
    );
    let any = Postgres::multi_host_url(&[&primary, &standby], "test", "any");
    let mut first = PgConnection::establish(&any).unwrap();
    assert_eq!(inet_server_port(&mut first), i64::from(primary.port()));
    primary.set_read_only(false);
    client.batch_execute("INSERT INTO t VALUES (3)").unwrap();
    assert!(standby.wait_caught_up(&primary, SOON));

    primary.crash();
    assert_eq!(primary.pid(), 0);
    timed("Postgres::promote", || standby.promote());
    assert!(!standby.is_in_recovery());
    let mut promoted = PgConnection::establish(&writable).expect("libpq finds the new primary");
    assert_eq!(inet_server_port(&mut promoted), i64::from(standby.port()));
    promoted.batch_execute("INSERT INTO t VALUES (4)").unwrap();
    assert_eq!(
        standby.query_i64_in("test", "SELECT COUNT(*) FROM t"),
        3,
        "rows 1, 3 (replicated) and 4"
    );
}

// --------------------------------------------- MariaDB primary + replica

fn server_id_of(conn: &mut MysqlConnection) -> i64 {
    one(conn, "SELECT CAST(@@server_id AS SIGNED) AS v").unwrap()
}

fn is_read_only_1290(e: &diesel::result::Error) -> bool {
    e.to_string().contains("--read-only option")
}

#[test]
fn mariadb_replica_replicates_and_lags() {
    let primary = timed("MariaDb::start_primary", || {
        MariaDb::start_primary().expect("start a primary")
    });
    let replica = timed("MariaDb::start_replica", || {
        primary.start_replica().expect("start a replica")
    });
    let mut on_primary = MysqlConnection::establish(&primary.url()).unwrap();
    let mut on_replica = MysqlConnection::establish(&replica.url()).unwrap();
    assert_eq!(
        server_id_of(&mut on_primary),
        i64::from(primary.server_id())
    );
    assert_eq!(
        server_id_of(&mut on_replica),
        i64::from(replica.server_id())
    );
    assert_ne!(primary.server_id(), replica.server_id());

    on_primary
        .batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .unwrap();
    assert!(replica.wait_caught_up(&primary, SOON));
    assert_eq!(replica.query_i64("SELECT COUNT(*) FROM test.t"), 1);
    let err = on_replica
        .batch_execute("INSERT INTO t VALUES (9)")
        .unwrap_err();
    assert!(is_read_only_1290(&err), "replica is read-only: {err}");

    replica.stop_sql_thread();
    on_primary
        .batch_execute("INSERT INTO t VALUES (2)")
        .unwrap();
    assert!(!replica.wait_caught_up(&primary, STALL), "lags");
    assert_eq!(replica.query_i64("SELECT COUNT(*) FROM test.t"), 1);
    replica.start_sql_thread();
    assert!(replica.wait_caught_up(&primary, SOON));
    assert_eq!(replica.query_i64("SELECT COUNT(*) FROM test.t"), 2);
}

#[test]
fn mariadb_read_only_and_switchover() {
    let primary = MariaDb::start_primary().unwrap();
    let replica = primary.start_replica().unwrap();
    let mut old = MysqlConnection::establish(&primary.url()).unwrap();
    old.batch_execute("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1)")
        .unwrap();
    primary.set_read_only(true);
    let err = old.batch_execute("INSERT INTO t VALUES (2)").unwrap_err();
    assert!(is_read_only_1290(&err), "{err}");
    primary.set_read_only(false);
    old.batch_execute("INSERT INTO t VALUES (2)").unwrap();

    timed("MariaDb::switchover_to", || primary.switchover_to(&replica));
    let mut new = MysqlConnection::establish(&replica.url()).unwrap();
    new.batch_execute("INSERT INTO t VALUES (3)")
        .expect("the new primary takes writes");
    let err = old.batch_execute("INSERT INTO t VALUES (4)").unwrap_err();
    assert!(is_read_only_1290(&err), "old primary is read-only: {err}");
    assert_eq!(replica.query_i64("SELECT COUNT(*) FROM test.t"), 3);

    // The old primary follows the new one.
    primary.replicate_from(&replica);
    new.batch_execute("INSERT INTO t VALUES (5)").unwrap();
    assert!(primary.wait_caught_up(&replica, SOON));
    assert_eq!(primary.query_i64("SELECT COUNT(*) FROM test.t"), 4);
}

/// `set_read_only(true)` while a write waits for the row lock of a
/// transaction that has one more statement to run: a plain `SET GLOBAL
/// read_only = 1` would hold that statement back until the waiting write
/// failed with 1205 (here after 20 s); the kit's bounded tries let both
/// transactions finish, then the server is read-only.
#[test]
fn mariadb_read_only_does_not_wedge_a_lock_queue() {
    let primary = MariaDb::start_primary().unwrap();
    let url = primary.url();
    let (mut holder, waiter, report) = mariadb_lock_queue(&primary, &url, 20);
    assert!(report.contains("waits for trx "), "no lock wait:\n{report}");
    // The holder's next statement comes while read_only is being set.
    let holder = background(move || {
        thread::sleep(STALL);
        holder.batch_execute("UPDATE t SET v = 1 WHERE id = 2; COMMIT")
    });
    let took = Instant::now();
    primary.set_read_only(true);
    let took = took.elapsed();
    let held = holder.recv_timeout(SOON).expect("the holder ends");
    let waited = waiter.recv_timeout(SOON).expect("the waiter ends");
    assert!(held.is_ok(), "the holder: {held:?} (set in {took:?})");
    assert!(waited.is_ok(), "the waiter: {waited:?} (set in {took:?})");
    assert_eq!(primary.query_i64("SELECT v FROM test.t WHERE id = 1"), 2);
    let mut late = MysqlConnection::establish(&url).unwrap();
    let err = late
        .batch_execute("INSERT INTO t VALUES (3, 0)")
        .unwrap_err();
    assert!(is_read_only_1290(&err), "read-only after {took:?}: {err}");
}

// --------------------------------------------------------------- pgbouncer

#[test]
fn pgbouncer_pools_in_transaction_mode() {
    let db = Postgres::shared();
    let url = db.create_database("bouncer");
    db.exec_in("bouncer", "CREATE TABLE t (id INT)");
    // One server connection for every client: only transaction pooling
    // lets two clients take turns on it.
    let bouncer = timed("Pgbouncer::start", || {
        Pgbouncer::start_with(db.port(), &[("default_pool_size", "1")]).expect("pgbouncer")
    });
    let proxied = via(&url, db.port(), bouncer.port());
    let mut a = PgConnection::establish(&proxied).unwrap();
    let mut b = PgConnection::establish(&proxied).unwrap();
    let pid = |c: &mut PgConnection| one(c, "SELECT pg_backend_pid()::bigint AS v").unwrap();
    let (pa, pb) = (pid(&mut a), pid(&mut b));
    assert_eq!(pa, pb, "both clients on the one server connection");
    a.transaction::<_, diesel::result::Error, _>(|c| c.batch_execute("INSERT INTO t VALUES (1)"))
        .unwrap();
    assert_eq!(db.query_i64_in("bouncer", "SELECT COUNT(*) FROM t"), 1);

    let config = bouncer.console("SHOW CONFIG");
    assert!(config.contains("pool_mode|transaction"), "{config}");
    assert!(config.contains("default_pool_size|1"), "{config}");

    timed("Pgbouncer::stop", || bouncer.stop());
    assert!(
        PgConnection::establish(&proxied).is_err(),
        "pgbouncer is down"
    );
    timed("Pgbouncer::start_again", || bouncer.start_again());
    let mut again = PgConnection::establish(&proxied).unwrap();
    assert_eq!(one(&mut again, "SELECT 2::bigint AS v").unwrap(), 2);
}

#[test]
fn pgbouncer_keeps_its_defaults_and_retargets() {
    let a = Postgres::shared();
    let b = Postgres::start().unwrap();
    let bouncer = Pgbouncer::start(a.port()).unwrap();
    let config = bouncer.console("SHOW CONFIG");
    assert!(config.contains("query_wait_timeout|120"), "{config}");
    assert!(config.contains("pool_mode|transaction"), "{config}");
    let pid = bouncer.pid();
    let owner = std::fs::metadata(format!("/proc/{pid}")).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    assert!(
        owner.is_ok_and(|uid| uid != 0),
        "pgbouncer does not run as root"
    );

    let mut conn = PgConnection::establish(&bouncer.url()).unwrap();
    assert_eq!(inet_server_port(&mut conn), i64::from(a.port()));
    bouncer.retarget(b.port());
    assert!(
        wait(|| inet_server_port(&mut conn) == i64::from(b.port())),
        "new server connections go to the new server"
    );
    drop(bouncer);
    assert!(
        wait(|| proctree::proc_info(pid).is_none()),
        "gone with its handle"
    );
}
