//! `examples/web_service` under fire: real HTTP requests from several
//! clients while the database server KILLs the service's connections, twice,
//! and then restarts. Every request must succeed (2xx), every balance must
//! match what the clients were told, every write must be in the ledger
//! exactly once, and the pool must end all-idle with the server seeing just
//! its connections.

#[path = "../app.rs"]
mod app;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use db_txn_tests::MariaDb;
use diesel::connection::SimpleConnection;
use diesel::{Connection, MysqlConnection};

const CLIENTS: i64 = 4;
/// An account every client deposits into: rows shared between requests.
const HOUSE: i64 = 1000;
/// Each client stops after this many rounds even if the faults never ran.
const MAX_ROUNDS: usize = 400;

struct Reply {
    status: u16,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn request(addr: SocketAddr, method: &str, path: &str, key: Option<&str>) -> Reply {
    let what = format!("{method} {path}");
    let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let key = key.map_or(String::new(), |k| format!("Idempotency-Key: {k}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: 0\r\n{key}\r\n"
    )
    .unwrap_or_else(|e| panic!("{what}: send: {e}"));
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .unwrap_or_else(|e| panic!("{what}: read: {e}"));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: no HTTP response: {raw:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what}: bad status line: {head:?}"));
    Reply {
        status,
        body: body.to_owned(),
    }
}

/// The `"balance"` values of a JSON reply, in order.
fn balances(body: &str) -> Vec<i64> {
    body.split(r#""balance":"#)
        .skip(1)
        .map(|rest| {
            let digits: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '-')
                .collect();
            digits
                .parse()
                .unwrap_or_else(|_| panic!("balance in {body:?}"))
        })
        .collect()
}

/// What one client did, all of it acknowledged with a 2xx.
#[derive(Default)]
struct Tally {
    a: i64,
    b: i64,
    house: i64,
    writes: i64,
}

/// A client: deposits into its own account `a`, moves part of it to its
/// own `b`, deposits 1 into the shared house account, reads both back.
fn client(addr: SocketAddr, n: i64, stop: &AtomicBool, done: &AtomicUsize) -> Tally {
    let (a, b) = (n * 10 + 1, n * 10 + 2);
    let call = |method: &str, path: String, key: Option<String>| -> Reply {
        let started = Instant::now();
        let reply = request(addr, method, &path, key.as_deref());
        assert!(
            (200..300).contains(&reply.status),
            "client {n}: {method} {path} failed after {:?}: {} {}",
            started.elapsed(),
            reply.status,
            reply.body
        );
        done.fetch_add(1, Ordering::SeqCst);
        reply
    };
    call("PUT", format!("/accounts/{a}"), None);
    call("PUT", format!("/accounts/{b}"), None);
    let mut t = Tally::default();
    for round in 0..MAX_ROUNDS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let key = |what: &str| Some(format!("client{n}-{round}-{what}"));
        let r = call(
            "POST",
            format!("/accounts/{a}/deposit?amount=100"),
            key("deposit"),
        );
        t.a += 100;
        t.writes += 1;
        assert_eq!(balances(&r.body), [t.a], "client {n}: deposit reply");

        let r = call(
            "POST",
            format!("/transfers?from={a}&to={b}&amount=30"),
            key("transfer"),
        );
        (t.a, t.b) = (t.a - 30, t.b + 30);
        t.writes += 1;
        assert_eq!(balances(&r.body), [t.a, t.b], "client {n}: transfer reply");

        // No key: the service makes up an operation id of its own.
        call("POST", format!("/accounts/{HOUSE}/deposit?amount=1"), None);
        t.house += 1;
        t.writes += 1;

        let r = call("GET", format!("/accounts/{a}"), None);
        assert_eq!(balances(&r.body), [t.a], "client {n}: balance of {a}");
        let r = call("GET", format!("/accounts/{b}"), None);
        assert_eq!(balances(&r.body), [t.b], "client {n}: balance of {b}");
    }
    t
}

/// Wait until the clients completed `target` requests in all.
fn wait_for(done: &AtomicUsize, target: usize, clients: &[thread::ScopedJoinHandle<'_, Tally>]) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while done.load(Ordering::SeqCst) < target {
        assert!(
            clients.iter().all(|c| !c.is_finished()),
            "a client stopped early (see its panic above)"
        );
        assert!(
            Instant::now() < deadline,
            "no progress to {target} requests"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// KILL every connection of the service, in one quick sweep from one admin
/// connection (as a DBA's script or a failover would); returns how many.
fn kill_all(db: &MariaDb, database: &str) -> usize {
    let admin_url = format!("mysql://root@127.0.0.1:{}/", db.port());
    let mut admin = MysqlConnection::establish(&admin_url).expect("admin connection");
    let mut killed = 0;
    for id in db.connection_ids(database) {
        match admin.batch_execute(&format!("KILL CONNECTION {id}")) {
            Ok(()) => killed += 1,
            // Closed by its pool between the listing and the KILL.
            Err(e) if e.to_string().contains("Unknown thread id") => {}
            Err(e) => panic!("KILL CONNECTION {id}: {e}"),
        }
    }
    killed
}

#[test]
fn no_request_fails_while_connections_are_killed_and_the_server_restarts() {
    // The runtime's events (retries, disconnects), shown if the test fails.
    tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let db = MariaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("{}?prefer_socket=false", db.create_database("bank"));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pool = runtime.block_on(app::setup(&url)).expect("setup");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(app::serve(listener, async {
        let _ = stopped.await;
    }));
    request(addr, "PUT", &format!("/accounts/{HOUSE}"), None);

    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let tallies: Vec<Tally> = thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let (stop, done) = (&stop, &done);
                s.spawn(move || client(addr, n, stop, done))
            })
            .collect();
        let mut target = 0;
        let mut step = |n: usize| {
            target += n;
            wait_for(&done, target, &clients);
        };
        step(60);
        assert!(
            kill_all(&db, "bank") >= 1,
            "the service had no connection to kill"
        );
        step(60);
        assert!(
            kill_all(&db, "bank") >= 1,
            "the service had no connection to kill"
        );
        step(60);
        db.restart();
        step(100);
        stop.store(true, Ordering::SeqCst);
        clients
            .into_iter()
            .map(|c| c.join().expect("a client failed (see its panic above)"))
            .collect()
    });

    // Every balance is what the clients were told, read through the service...
    let mut house = 0;
    let mut writes = 0;
    for (n, t) in (0..CLIENTS).zip(&tallies) {
        for (id, expected) in [(n * 10 + 1, t.a), (n * 10 + 2, t.b)] {
            let r = request(addr, "GET", &format!("/accounts/{id}"), None);
            assert_eq!(
                (r.status, balances(&r.body)),
                (200, vec![expected]),
                "account {id}"
            );
        }
        house += t.house;
        writes += t.writes;
    }
    let r = request(addr, "GET", &format!("/accounts/{HOUSE}"), None);
    assert_eq!(balances(&r.body), [house], "the shared account");
    // ...and every acknowledged write is in the ledger once, nothing else is.
    assert_eq!(
        db.query_i64_in("bank", "SELECT COUNT(*) FROM bank_ops"),
        writes,
        "ledger rows vs acknowledged writes"
    );
    assert_eq!(
        db.query_i64_in("bank", "SELECT SUM(balance) FROM bank_accounts"),
        tallies.iter().map(|t| t.a + t.b).sum::<i64>() + house,
        "money created or lost"
    );

    let stats_reply = request(addr, "GET", "/stats", None);
    assert_eq!(stats_reply.status, 200);
    shutdown.send(()).expect("server still running");
    runtime
        .block_on(server)
        .expect("server task")
        .expect("server stopped cleanly");

    let s = pool.stats();
    eprintln!(
        "{} requests; pool: {}",
        done.load(Ordering::SeqCst),
        app::stats_json(&s)
    );
    assert!(s.disconnects >= 1, "the faults reached the pool: {s:?}");
    assert!(s.opened > 1, "dead connections were replaced: {s:?}");
    assert_eq!(
        s.connections, s.idle_connections,
        "checked out at the end: {s:?}"
    );
    let open = i64::from(s.connections);
    assert_eq!(
        db.wait_connection_count("bank", open, Duration::from_secs(10)),
        open,
        "the server sees exactly the pool's connections: {s:?}"
    );
    // What the KILL one-liner of `main.rs` reads: the pool's connections in
    // this run of the server (none from before the restart), and nothing else.
    let own = runtime
        .block_on(app::own_connection_ids())
        .expect("own connections");
    let listed = db.connection_ids("bank");
    assert_eq!(
        own.len(),
        pool.stats().connections as usize,
        "{own:?} vs the pool"
    );
    assert!(
        own.iter().all(|id| listed.contains(id)),
        "{own:?} vs the server's {listed:?}"
    );
}
