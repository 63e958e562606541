//! An axum service whose handler awaits a `#[db_txn]` call: a client that
//! goes away mid-request makes hyper drop the handler's future, with the
//! call in its transaction. Nothing commits, the server-side statement is
//! cancelled at once, and the service goes on serving.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use db_txn::{db_txn, AsyncPool};
use db_txn_async_tests::cancel::assert_settled;
use db_txn_async_tests::ledger::Ledger;
use db_txn_async_tests::server::eventually;
use db_txn_async_tests::AsyncServer;
use db_txn_tests::Postgres;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Records `op`, then works for `secs` on the server, then moves money.
#[db_txn(pool = pool)]
async fn slow_transfer(
    conn: &mut AsyncPgConnection,
    pool: &AsyncPool<AsyncPgConnection>,
    op: &str,
    secs: u32,
) -> Result<(), db_txn::Error> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 7)"
    ))
    .await?;
    conn.batch_execute(&format!("SELECT pg_sleep({secs})"))
        .await?;
    conn.batch_execute(
        "UPDATE accounts SET balance = balance - 7 WHERE id = 0; \
         UPDATE accounts SET balance = balance + 7 WHERE id = 1",
    )
    .await?;
    Ok(())
}

async fn handler(
    State(pool): State<AsyncPool<AsyncPgConnection>>,
    Path((op, secs)): Path<(String, u32)>,
) -> Result<&'static str, (StatusCode, String)> {
    slow_transfer(&pool, &op, secs)
        .await
        .map(|()| "done\n")
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

async fn request(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send");
    stream
}

/// The whole response (the service closes after it).
async fn answer(mut stream: tokio::net::TcpStream) -> String {
    let mut reply = String::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut reply));
    read.await.expect("an answer within 10 s").expect("read");
    reply
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_request() {
    db_txn_async_tests::logs();
    let server = Postgres::shared();
    let mut l = Ledger::new(server, "axum_abort", async |url| {
        Ledger::<Postgres>::pool(url, 2).await
    })
    .await;
    let app = Router::new()
        .route("/transfers/{op}/{secs}", post(handler))
        .with_state(l.pool.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = tokio::spawn(async move { axum::serve(listener, app).await });

    // A request that completes.
    let reply = answer(request(addr, "/transfers/first/0").await).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    l.acknowledge("first");

    // A request whose client hangs up while the call sleeps on the server.
    let before = l.pool.stats();
    let aborted = request(addr, "/transfers/aborted/30").await;
    let running = eventually(Duration::from_secs(5), || {
        l.server.open_transactions(&l.database) == 1
    })
    .await;
    assert!(running, "the call never reached the server");
    drop(aborted);
    let hung_up = Instant::now();
    let gone = eventually(Duration::from_secs(3), || {
        l.server.open_transactions(&l.database) == 0
    })
    .await;
    assert!(gone, "the 30 s statement of the dropped request still runs");
    eprintln!(
        "statement cancelled {:?} after the client hung up",
        hung_up.elapsed()
    );
    assert_settled(&l, "after the hang-up").await;
    let after = l.pool.stats();
    assert_eq!(
        after.closed - before.closed,
        1,
        "closed, not returned: {after:?}"
    );
    assert_eq!(l.times_applied("aborted"), 0, "nothing committed");

    // The service goes on.
    let reply = answer(request(addr, "/transfers/again/0").await).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    l.acknowledge("again");
    l.assert_consistent(0);
    service.abort();
}
