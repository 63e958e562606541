//! The classification table against the real client libraries: each fault is
//! produced on a plain diesel connection (no db_txn in the way), and the
//! error the client reports must be classified as a disconnect. The texts
//! seen are printed (`--nocapture`) so the table in `runtime/src/disconnect.rs`
//! can be checked against them.
#![cfg(all(feature = "mysql", feature = "postgres"))]

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use db_txn::{classify, Backend, Disconnect, ErrorClass};
use db_txn_tests::{MariaDb, Postgres, Proxy};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::{MysqlConnection, PgConnection};

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

fn expect(backend: Backend, what: &str, err: &diesel::result::Error, want: &[Disconnect]) {
    let class = classify(backend, err);
    eprintln!("{backend:?} {what}: {err:?} -> {class:?}");
    match class {
        ErrorClass::Disconnect(d) => assert!(
            want.contains(&d),
            "{what}: {d:?} not in {want:?} for {err:?}"
        ),
        other => panic!("{what}: {err:?} classified {other:?}, expected a disconnect"),
    }
}

fn mysql(url: &str) -> MysqlConnection {
    MysqlConnection::establish(url).expect("connect")
}

fn mysql_id(conn: &mut MysqlConnection) -> i64 {
    diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
        .get_result::<Id>(conn)
        .unwrap()
        .id
}

#[test]
fn mariadb_wait_timeout_is_gone_away() {
    let server = MariaDb::shared();
    let mut conn = mysql(&server.url());
    conn.batch_execute("SET SESSION wait_timeout = 1").unwrap();
    thread::sleep(Duration::from_millis(2500));
    let err = conn.batch_execute("SELECT 1").unwrap_err();
    expect(
        Backend::Mysql,
        "after wait_timeout",
        &err,
        &[Disconnect::GoneAway, Disconnect::Lost],
    );
    assert!(
        err.to_string().contains("Server has gone away"),
        "libmariadb's 2006 text: {err}"
    );
}

#[test]
fn mariadb_kill_idle_is_lost_connection() {
    let server = MariaDb::shared();
    let mut conn = mysql(&server.url());
    server.kill_connection(mysql_id(&mut conn));
    let err = conn.batch_execute("SELECT 1").unwrap_err();
    expect(Backend::Mysql, "after KILL", &err, &[Disconnect::Lost]);
    assert!(
        err.to_string()
            .contains("Lost connection to server during query"),
        "libmariadb's 2013 text: {err}"
    );
    // The connection stays dead: every later statement is classified too.
    let again = conn.batch_execute("SELECT 1").unwrap_err();
    expect(
        Backend::Mysql,
        "after KILL, again",
        &again,
        &[Disconnect::GoneAway, Disconnect::Lost],
    );
}

#[test]
fn mariadb_kill_during_a_query() {
    let server = MariaDb::shared();
    let mut conn = mysql(&server.url());
    let id = mysql_id(&mut conn);
    let err = thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(500));
            server.kill_connection(id);
        });
        conn.batch_execute("SELECT SLEEP(10)").unwrap_err()
    });
    expect(
        Backend::Mysql,
        "KILL during a query",
        &err,
        // libmariadb reports 2006 here (seen: "Server has gone away"), not 1927.
        &[Disconnect::GoneAway, Disconnect::Killed, Disconnect::Lost],
    );
}

#[test]
fn mariadb_shutdown_during_a_query() {
    let server = MariaDb::start().unwrap();
    let mut conn = mysql(&server.url());
    let err = thread::scope(|s| {
        s.spawn(|| {
            thread::sleep(Duration::from_millis(500));
            server.stop();
        });
        conn.batch_execute("SELECT SLEEP(30)").unwrap_err()
    });
    expect(
        Backend::Mysql,
        "server shutdown during a query",
        &err,
        // Seen: "Server has gone away"; 1053 when the server answers first.
        &[
            Disconnect::GoneAway,
            Disconnect::ServerShutdown,
            Disconnect::Killed,
            Disconnect::Lost,
        ],
    );
}

#[test]
fn mariadb_cut_link_is_lost_connection() {
    let server = MariaDb::shared();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], server.port()))).unwrap();
    let mut conn = mysql(&format!("mysql://root@127.0.0.1:{}/test", proxy.port()));
    proxy.cut_all();
    let err = conn.batch_execute("SELECT 1").unwrap_err();
    expect(
        Backend::Mysql,
        "link cut",
        &err,
        &[Disconnect::Lost, Disconnect::GoneAway],
    );
}

fn pg(url: &str) -> PgConnection {
    PgConnection::establish(url).expect("connect")
}

#[test]
fn postgres_terminate_backend_sequence() {
    let server = Postgres::shared();
    let mut conn = pg(&server.url());
    let pid = diesel::sql_query("SELECT CAST(pg_backend_pid() AS BIGINT) AS id")
        .get_result::<Id>(&mut conn)
        .unwrap()
        .id;
    server.kill_connection(pid);
    let first = conn.batch_execute("SELECT 1").unwrap_err();
    expect(
        Backend::Postgres,
        "after pg_terminate_backend",
        &first,
        &[Disconnect::Killed, Disconnect::Lost, Disconnect::Closed],
    );
    let second = conn.batch_execute("SELECT 1").unwrap_err();
    expect(
        Backend::Postgres,
        "the next statement",
        &second,
        &[Disconnect::Closed],
    );
    assert!(matches!(
        second,
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UnableToSendCommand,
            _
        )
    ));
    let third = conn
        .transaction(|c| c.batch_execute("SELECT 1"))
        .unwrap_err();
    expect(
        Backend::Postgres,
        "a transaction after that",
        &third,
        &[Disconnect::BrokenTransaction],
    );
}

#[test]
fn postgres_idle_session_timeout() {
    let server = Postgres::shared();
    let mut conn = pg(&server.url());
    conn.batch_execute("SET idle_session_timeout = 1000")
        .unwrap();
    thread::sleep(Duration::from_millis(2500));
    let err = conn.batch_execute("SELECT 1").unwrap_err();
    expect(
        Backend::Postgres,
        "after idle_session_timeout",
        &err,
        &[
            Disconnect::IdleTimeout,
            Disconnect::Lost,
            Disconnect::Closed,
        ],
    );
}

#[test]
fn postgres_restart_while_idle() {
    let server = Postgres::start().unwrap();
    let mut conn = pg(&server.url());
    server.restart();
    let err = conn.batch_execute("SELECT 1").unwrap_err();
    expect(
        Backend::Postgres,
        "after a restart",
        &err,
        &[Disconnect::Killed, Disconnect::Lost, Disconnect::Closed],
    );
}

#[test]
fn postgres_cut_link() {
    let server = Postgres::shared();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], server.port()))).unwrap();
    let mut conn = pg(&format!(
        "postgres://postgres@127.0.0.1:{}/test",
        proxy.port()
    ));
    proxy.cut_all();
    let err = conn.batch_execute("SELECT 1").unwrap_err();
    expect(
        Backend::Postgres,
        "link cut",
        &err,
        &[Disconnect::Lost, Disconnect::Closed],
    );
}
