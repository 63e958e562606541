//! What a disconnect-and-retry looks like in the logs: a KILL between two
//! transactions on a real MariaDB, captured through `tracing-subscriber`'s
//! fmt layer. The README shows this capture (`--nocapture` prints it). Every
//! line of a call, the body's own included, is inside the call's `db_txn`
//! span, which names the function and the attempt.
#![cfg(feature = "mysql")]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use db_txn::{db_txn, Pool};
use db_txn_tests::MariaDb;
use diesel::connection::SimpleConnection;
use diesel::MysqlConnection;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[db_txn(pool = pool)]
fn record_payment(
    conn: &mut MysqlConnection,
    pool: &Pool<MysqlConnection>,
    id: i64,
) -> Result<(), db_txn::Error> {
    tracing::debug!(id, "inserting the payment");
    conn.batch_execute(&format!("INSERT INTO payments VALUES ({id})"))?;
    Ok(())
}

#[test]
fn a_disconnect_and_its_retry_are_logged_with_the_function() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .without_time()
                .with_writer(move || writer.clone()),
        )
        .with(
            Targets::new()
                .with_target("db_txn", Level::INFO)
                .with_target("tracing_events", Level::DEBUG),
        );
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MariaDb::shared();
    let url = server.create_database("tracing_events");
    let pool = Pool::<MysqlConnection>::builder(url)
        .max_size(1)
        .ping_window(Duration::from_secs(60))
        .build()
        .unwrap();
    pool.get()
        .unwrap()
        .batch_execute("CREATE TABLE payments (id BIGINT PRIMARY KEY)")
        .unwrap();
    record_payment(&pool, 1).unwrap();
    let quiet = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        quiet.lines().all(|l| !l.contains(" db_txn: ")),
        "nothing of db_txn at INFO when nothing fails: {quiet}"
    );
    assert!(
        quiet.contains(r#"db_txn{function="tracing_events::record_payment" attempt=1}: tracing_events: inserting the payment id=1"#),
        "the body's events are inside the call's span: {quiet}"
    );
    capture.0.lock().unwrap().clear();

    assert_eq!(server.connection_count("tracing_events"), 1);
    let id = server.query_i64(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = 'tracing_events' LIMIT 1",
    );
    server.kill_connection(id);
    record_payment(&pool, 2).unwrap();

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    println!("{log}");
    let span = |attempt: u32| {
        format!(r#"db_txn{{function="tracing_events::record_payment" attempt={attempt}}}: "#)
    };
    assert!(
        log.lines().any(|l| l.starts_with(" WARN")
            && l.contains("disconnect detected before COMMIT")
            && l.contains(&span(1))),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.starts_with(" INFO")
            && l.contains("running the body again")
            && l.contains(&span(1))),
        "{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&span(2)) && l.contains("inserting the payment id=2")),
        "the second attempt runs in the same span, attempt=2: {log}"
    );
    assert!(log.contains("connection invalidated"), "{log}");
    assert_eq!(pool.stats().retries, 1);
}
