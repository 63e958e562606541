//! `resolve_commit` on `async fn` beyond the fault matrix: where its
//! settings come from (off unless the pool or the function turns it on; a
//! function's option wins either way), PostgreSQL transactions that wrote
//! nothing, and MariaDB's markers deleted in batches on the async path.

use std::io::Write;
use std::sync::{Arc, Mutex};

use db_txn::{db_txn, AsyncPool, AsyncTxnConnection};
use db_txn_async_tests::ledger::{Ledger, LedgerError};
use db_txn_async_tests::resolved::{
    database_of, resolutions, resolving_via_proxy, upstream, BOUND,
};
use db_txn_async_tests::AsyncServer;
use db_txn_tests::{MariaDb, Postgres, ProxyProcess};

/// Markers deleted together (`pool/resolution.rs`).
const FORGET_BATCH: i64 = 256;

/// The ledger's transfer with the option on for this function.
#[db_txn(pool = pool, resolve_commit)]
async fn transfer_resolved<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    op: &str,
) -> Result<(), LedgerError> {
    write(conn, op).await
}

/// The ledger's transfer with the option off for this function.
#[db_txn(pool = pool, resolve_commit = false)]
async fn transfer_unresolved<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    op: &str,
) -> Result<(), LedgerError> {
    write(conn, op).await
}

async fn write<C: AsyncTxnConnection>(conn: &mut C, op: &str) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 7); \
         UPDATE accounts SET balance = balance - 7 WHERE id = 0; \
         UPDATE accounts SET balance = balance + 7 WHERE id = 1"
    ))
    .await?;
    Ok(())
}

/// A ledger whose pool goes through a proxy process, with the pool's
/// `resolve_commit` set to `on` (`None`: left at its default).
async fn ledger<'s, S: AsyncServer>(
    server: &'s S,
    name: &str,
    on: Option<bool>,
) -> (ProxyProcess, Ledger<'s, S>) {
    let proxy = ProxyProcess::start(upstream(server)).expect("proxy");
    let port = proxy.port();
    let l = Ledger::new(server, name, async |url| {
        let mut builder =
            AsyncPool::builder(server.url_via_port(&database_of(&url), port)).max_size(2);
        if let Some(on) = on {
            builder = builder.resolve_commit(on);
        }
        builder.build().await.expect("pool")
    })
    .await;
    (proxy, l)
}

fn is_commit_unknown(r: &Result<(), LedgerError>) -> bool {
    matches!(
        r,
        Err(LedgerError::Txn(db_txn::Error::CommitUnknown { .. }))
    )
}

/// With the defaults, a lost COMMIT gives `CommitUnknown` exactly as
/// documented (counted, never retried, no resolution); a function's
/// `resolve_commit` turns resolution on for itself on that same pool.
async fn off_by_default_and_a_function_turns_it_on<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = ledger(server, "rc_default", None).await;
    l.transfer().await;
    proxy.cut_after_commit();
    let (op, r) = l.try_transfer(&|| {}).await;
    assert!(is_commit_unknown(&r), "{r:?}");
    if let Err(LedgerError::Txn(e)) = &r {
        assert!(e.is_commit_unknown());
        assert!(e.to_string().contains("may or may not"), "{e}");
    }
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (0, 0, 1, 0), "{s:?}");
    assert_eq!(l.times_applied(&op), 1, "it had committed");
    proxy.cut_after_commit();
    let r = transfer_resolved(&l.pool, "resolved").await;
    assert!(r.is_ok(), "{r:?}");
    assert!(!proxy.commit_fault_pending(), "the COMMIT was cut");
    l.acknowledge("resolved");
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (1, 0, 1, 0), "{s:?}");
    l.assert_consistent(1);
    l.assert_no_leak().await;
}

/// A function's `resolve_commit = false` wins over its pool's default, and
/// the pool's default stands for the others.
async fn a_function_turns_it_off<S: AsyncServer>(server: &S) {
    let (proxy, mut l) = ledger(server, "rc_fn_off", Some(true)).await;
    l.transfer().await;
    proxy.cut_after_commit();
    let r = transfer_unresolved(&l.pool, "unresolved").await;
    assert!(is_commit_unknown(&r), "{r:?}");
    proxy.cut_after_commit();
    l.transfer().await;
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (1, 0, 1, 0), "{s:?}");
    l.assert_consistent(1);
    l.assert_no_leak().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_off_by_default_and_a_function_turns_it_on() {
    db_txn_async_tests::logs();
    off_by_default_and_a_function_turns_it_on(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_off_by_default_and_a_function_turns_it_on() {
    db_txn_async_tests::logs();
    off_by_default_and_a_function_turns_it_on(Postgres::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_a_function_turns_it_off() {
    db_txn_async_tests::logs();
    a_function_turns_it_off(MariaDb::shared()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_function_turns_it_off() {
    db_txn_async_tests::logs();
    a_function_turns_it_off(Postgres::shared()).await;
}

/// Markers of committed transactions are deleted 256 at a time on the
/// async path too: after 700 transactions the table holds fewer than 256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_markers_do_not_pile_up() {
    db_txn_async_tests::logs();
    let (_proxy, mut l) = ledger(MariaDb::shared(), "rc_markers", Some(true)).await;
    for _ in 0..700 {
        l.transfer().await;
    }
    let left = l.count("SELECT COUNT(*) FROM db_txn_commit_markers");
    assert!((1..FORGET_BATCH).contains(&left), "{left} markers left");
    l.assert_consistent(0);
}

#[db_txn(pool = pool)]
async fn count_ops(
    conn: &mut diesel_async::AsyncPgConnection,
    pool: &AsyncPool<diesel_async::AsyncPgConnection>,
) -> Result<i64, LedgerError> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query("SELECT COUNT(*) AS n FROM ops")
        .get_result(conn)
        .await?;
    Ok(n.n)
}

/// PostgreSQL: a transaction that wrote nothing has no transaction id:
/// when its COMMIT is lost, nothing is lost, and the call returns its
/// result without asking.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_nothing_written_keeps_its_result() {
    db_txn_async_tests::logs();
    let (proxy, l) = ledger(Postgres::shared(), "rc_nothing_written", Some(true)).await;
    proxy.cut_after_commit();
    let n = count_ops(&l.pool).await.expect("the result is kept");
    assert_eq!(n, 0);
    assert!(!proxy.commit_fault_pending(), "the COMMIT was cut");
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (0, 0, 0, 0), "{s:?}");
    assert!(s.disconnects >= 1, "{s:?}");
}

/// Where a test's events go.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().expect("capture"))).expect("utf-8")
    }
}

/// One INFO event per resolution, with its outcome, inside the call's span,
/// as on the sync form.
// Current-thread: the events stay on this thread's subscriber.
#[tokio::test]
async fn postgres_one_info_event_per_resolution() {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (proxy, mut l) = resolving_via_proxy(Postgres::shared(), "rc_events", BOUND).await;
    l.transfer().await;
    for (arm, outcome) in [
        (
            &(|p: &ProxyProcess| p.cut_after_commit()) as &dyn Fn(_),
            "committed",
        ),
        (&|p: &ProxyProcess| p.drop_commit(), "aborted"),
    ] {
        capture.take();
        arm(&proxy);
        l.transfer().await;
        let log = capture.take();
        let resolved: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" db_txn: ") && l.contains("outcome="))
            .collect();
        assert_eq!(resolved.len(), 1, "{log}");
        let event = resolved[0];
        assert!(event.starts_with(" INFO"), "{event}");
        assert!(event.contains(&format!("outcome=\"{outcome}\"")), "{event}");
        assert!(event.contains("waited_ms="), "{event}");
        assert!(
            event.contains("db_txn{function="),
            "inside the call's span: {event}"
        );
    }
    let s = l.pool.stats();
    assert_eq!(resolutions(&s), (1, 1, 0, 1), "{s:?}");
    l.assert_consistent(0);
}
