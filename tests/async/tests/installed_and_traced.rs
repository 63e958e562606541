//! The default async pool (`install_async`) and what a disconnect-and-retry
//! looks like in the logs: every event of a call, the body's own included,
//! is inside its `db_txn{function, attempt}` span, as with the sync form.
//! One test, so that nothing else in this binary sees the installed pool.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use db_txn::{db_txn, AsyncPool};
use db_txn_tests::MariaDb;
use diesel_async::{AsyncMysqlConnection, SimpleAsyncConnection};

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

impl Capture {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

#[db_txn]
async fn record_payment(conn: &mut AsyncMysqlConnection, id: i64) -> Result<(), db_txn::Error> {
    tracing::info!(id, "inserting the payment");
    conn.batch_execute(&format!("INSERT INTO payments VALUES ({id})"))
        .await?;
    Ok(())
}

// The default: the events stay on this thread's subscriber.
#[tokio::test]
async fn installed_pool_and_the_spans_of_a_retry() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    match record_payment(0).await {
        Err(db_txn::Error::NoPool {
            connection,
            function,
        }) => {
            assert!(connection.ends_with("AsyncMysqlConnection"), "{connection}");
            assert_eq!(function, "installed_and_traced::record_payment");
        }
        other => panic!("{other:?}"),
    }
    assert!(db_txn::installed_async::<AsyncMysqlConnection>().is_none());

    let server = MariaDb::shared();
    server.create_database("async_traced");
    let url = format!(
        "mysql://root@127.0.0.1:{}/async_traced?prefer_socket=false",
        server.port()
    );
    let pool = AsyncPool::<AsyncMysqlConnection>::builder(url)
        .max_size(1)
        .ping_window(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    pool.get()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE payments (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    assert!(db_txn::install_async(pool.clone()).is_none());
    capture.take();

    record_payment(1).await.unwrap();
    let quiet = capture.take();
    assert!(
        quiet.lines().all(|l| !l.contains(" db_txn: ")),
        "nothing of db_txn at INFO when nothing fails: {quiet}"
    );
    assert!(
        quiet.contains(r#"db_txn{function="installed_and_traced::record_payment" attempt=1}: installed_and_traced: inserting the payment id=1"#),
        "the body's events are inside the call's span: {quiet}"
    );

    server.kill_all_in("async_traced");
    record_payment(2).await.unwrap();
    let log = capture.take();
    println!("{log}");
    let span = |attempt: u32| {
        format!(r#"db_txn{{function="installed_and_traced::record_payment" attempt={attempt}}}: "#)
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

    let removed = db_txn::uninstall_async::<AsyncMysqlConnection>().expect("installed");
    assert_eq!(
        removed.stats().checkouts,
        pool.stats().checkouts,
        "the same pool"
    );
    assert!(matches!(
        record_payment(3).await,
        Err(db_txn::Error::NoPool { .. })
    ));
}

trait KillAll {
    fn kill_all_in(&self, database: &str);
}

impl KillAll for MariaDb {
    fn kill_all_in(&self, database: &str) {
        for id in self.connection_ids(database) {
            self.kill_connection(id);
        }
    }
}
