//! The classification tables against the async drivers (mysql_async and
//! tokio-postgres under diesel-async): each fault is produced on a plain
//! diesel-async connection (no db_txn in the way), and the error the driver
//! reports must be classified as a disconnect. The texts seen are printed
//! (`--nocapture`) so the tables in `runtime/src/backend/*/errors.rs` can be
//! checked against them. The sync drivers' twin is `tests/disconnect_texts.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use db_txn::{classify, Backend, Disconnect, ErrorClass};
use db_txn_tests::{MariaDb, Postgres, Proxy};
use diesel::sql_types::BigInt;
use diesel::QueryableByName;
use diesel_async::{
    AsyncConnection, AsyncMysqlConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
};

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

/// Through TCP, as a remote server is reached (mysql_async would move a
/// local connection onto the unix socket).
fn mysql_url(port: u16) -> String {
    format!("mysql://root@127.0.0.1:{port}/test?prefer_socket=false")
}

async fn mysql(port: u16) -> AsyncMysqlConnection {
    AsyncMysqlConnection::establish(&mysql_url(port))
        .await
        .expect("connect")
}

async fn mysql_id(conn: &mut AsyncMysqlConnection) -> i64 {
    diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
        .get_result::<Id>(conn)
        .await
        .unwrap()
        .id
}

const DEAD: &[Disconnect] = &[Disconnect::Lost, Disconnect::Closed];

/// The first statement on a dead link, then the one after.
async fn mysql_sequence(conn: &mut AsyncMysqlConnection, what: &str) {
    let first = conn.batch_execute("SELECT 1").await.unwrap_err();
    expect(Backend::Mysql, what, &first, DEAD);
    let second = conn.batch_execute("SELECT 1").await.unwrap_err();
    expect(
        Backend::Mysql,
        &format!("{what}, then"),
        &second,
        &[Disconnect::Closed],
    );
    assert!(
        second
            .to_string()
            .contains("Connection to the server is closed."),
        "{second}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_wait_timeout() {
    let server = MariaDb::shared();
    let mut conn = mysql(server.port()).await;
    conn.batch_execute("SET SESSION wait_timeout = 1")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    mysql_sequence(&mut conn, "after wait_timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_kill_idle() {
    let server = MariaDb::shared();
    let mut conn = mysql(server.port()).await;
    server.kill_connection(mysql_id(&mut conn).await);
    mysql_sequence(&mut conn, "after KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_kill_during_a_query() {
    let server = MariaDb::shared();
    let mut conn = mysql(server.port()).await;
    let id = mysql_id(&mut conn).await;
    let kill = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.kill_connection(id);
    };
    let (_, err) = tokio::join!(kill, conn.batch_execute("SELECT SLEEP(10)"));
    expect(
        Backend::Mysql,
        "KILL during a query",
        &err.unwrap_err(),
        DEAD,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_shutdown_during_a_query() {
    let server = MariaDb::start().unwrap();
    let mut conn = mysql(server.port()).await;
    let stop = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.stop();
    };
    let (_, err) = tokio::join!(stop, conn.batch_execute("SELECT SLEEP(30)"));
    expect(
        Backend::Mysql,
        "server shutdown during a query",
        &err.unwrap_err(),
        &[
            Disconnect::Lost,
            Disconnect::Closed,
            Disconnect::ServerShutdown,
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cut_link() {
    let server = MariaDb::shared();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], server.port()))).unwrap();
    let mut conn = mysql(proxy.port()).await;
    proxy.cut_all();
    mysql_sequence(&mut conn, "link cut").await;
}

/// A statement whose future was dropped mid-flight: mysql_async's replies
/// come out of step (db_txn never reuses such a connection; this shows
/// what happens to code that does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_after_a_dropped_statement() {
    let server = MariaDb::shared();
    let mut conn = mysql(server.port()).await;
    let dropped = tokio::time::timeout(
        Duration::from_millis(200),
        conn.batch_execute("SELECT SLEEP(1)"),
    )
    .await;
    assert!(dropped.is_err(), "the statement was still running");
    let mut seen = Vec::new();
    for _ in 0..3 {
        match diesel::sql_query("SELECT CAST(42 AS SIGNED) AS id")
            .get_result::<Id>(&mut conn)
            .await
        {
            Ok(row) => seen.push(format!("Ok({})", row.id)),
            Err(e) => {
                expect(Backend::Mysql, "after a dropped statement", &e, DEAD);
                seen.push(e.to_string());
            }
        }
    }
    eprintln!("after a dropped statement: {seen:?}");
    assert!(
        seen.iter().any(|s| !s.starts_with("Ok")),
        "the replies are out of step: {seen:?}"
    );
}

async fn pg(url: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(url).await.expect("connect")
}

async fn pg_pid(conn: &mut AsyncPgConnection) -> i64 {
    diesel::sql_query("SELECT CAST(pg_backend_pid() AS BIGINT) AS id")
        .get_result::<Id>(conn)
        .await
        .unwrap()
        .id
}

/// tokio-postgres: the first statement on a dead connection may still read
/// the server's last words (its FATAL message, when the connection task
/// took it in before the socket closed: a race seen in CI), or find the
/// connection closed; every later statement finds it closed.
async fn pg_sequence(conn: &mut AsyncPgConnection, what: &str) {
    let first = conn.batch_execute("SELECT 1").await.unwrap_err();
    expect(
        Backend::Postgres,
        &format!("{what}: 1st"),
        &first,
        &[Disconnect::Killed, Disconnect::Closed],
    );
    for n in ["2nd", "3rd"] {
        let err = conn.batch_execute("SELECT 1").await.unwrap_err();
        expect(
            Backend::Postgres,
            &format!("{what}: {n}"),
            &err,
            &[Disconnect::Closed],
        );
        assert!(
            matches!(
                err,
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UnableToSendCommand,
                    _
                )
            ),
            "{err:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_terminate_backend() {
    let server = Postgres::shared();
    let mut conn = pg(&server.url()).await;
    server.kill_connection(pg_pid(&mut conn).await);
    pg_sequence(&mut conn, "after pg_terminate_backend").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_terminate_during_a_query() {
    let server = Postgres::shared();
    let mut conn = pg(&server.url()).await;
    let pid = pg_pid(&mut conn).await;
    let kill = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        server.kill_connection(pid);
    };
    let (_, err) = tokio::join!(kill, conn.batch_execute("SELECT pg_sleep(10)"));
    expect(
        Backend::Postgres,
        "pg_terminate_backend during a query",
        &err.unwrap_err(),
        &[Disconnect::Killed, Disconnect::Closed],
    );
    pg_sequence(&mut conn, "then").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_idle_session_timeout() {
    let server = Postgres::shared();
    let mut conn = pg(&server.url()).await;
    conn.batch_execute("SET idle_session_timeout = 1000")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    pg_sequence(&mut conn, "after idle_session_timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_idle_in_transaction_timeout() {
    let server = Postgres::shared();
    let mut conn = pg(&server.url()).await;
    conn.batch_execute("SET idle_in_transaction_session_timeout = 1000; BEGIN")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    pg_sequence(&mut conn, "after idle_in_transaction_session_timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_while_idle() {
    let server = Postgres::start().unwrap();
    let mut conn = pg(&server.url()).await;
    server.restart();
    pg_sequence(&mut conn, "after a restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_link() {
    let server = Postgres::shared();
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], server.port()))).unwrap();
    let mut conn = pg(&format!(
        "postgres://postgres@127.0.0.1:{}/test",
        proxy.port()
    ))
    .await;
    proxy.cut_all();
    pg_sequence(&mut conn, "link cut").await;
}

/// What the pools poll for while a server restarts: a refused connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connects_name_the_refusal() {
    let port = db_txn_tests::ports::free_port();
    let my = AsyncMysqlConnection::establish(&mysql_url(port))
        .await
        .err()
        .expect("refused");
    let pg = AsyncPgConnection::establish(&format!("postgres://postgres@127.0.0.1:{port}/test"))
        .await
        .err()
        .expect("refused");
    eprintln!("refused: {my:?} / {pg:?}");
    assert!(my.to_string().contains("Connection refused"), "{my}");
    // diesel-async keeps tokio-postgres's message, not its I/O cause.
    assert!(
        pg.to_string().contains("error connecting to server"),
        "{pg}"
    );
}
