//! A web service whose handlers call `#[db_txn]` functions: the gunicorn +
//! Flask-SQLAlchemy API of the seeds, without `session.remove()` after each
//! request, `pool_pre_ping`, `pool_recycle` or an `auto_rollback` decorator.
//!
//! ```sh
//! cargo run --example web_service --features async-mysql
//! ```
//!
//! `DATABASE_URL` (`mysql://user:pass@host:port/db`) names the database; if
//! unset, a throwaway MariaDB is started for the run. `PORT` picks the port
//! on 127.0.0.1 (default: a free one, printed). `RUST_LOG` sets the log
//! filter (default `info`). Ctrl-C stops it.
//!
//! Handlers await `#[db_txn]` `async fn`s on diesel-async (no
//! `spawn_blocking`); each call checks out a connection, runs one
//! transaction and gives the connection back, whatever happens in between,
//! a client that hangs up mid-request included.
//! `tests/example_web_service.rs` sends requests while the server KILLs the
//! service's connections and restarts, and checks that none failed.

mod app;

use db_txn_tests::MariaDb;
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error>;

fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let (url, server) = database()?;
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| format!("PORT={p:?} is not a port number"))?,
        Err(_) => 0,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let pool = runtime.block_on(app::setup(&url))?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let base = format!("http://{}", listener.local_addr()?);
        println!("web_service listening on {base} (Ctrl-C stops it)\n");
        println!("try:");
        println!("  curl -X PUT {base}/accounts/1");
        println!("  curl -X PUT {base}/accounts/2");
        println!("  curl -X POST '{base}/accounts/1/deposit?amount=100'");
        println!("  curl -X POST '{base}/transfers?from=1&to=2&amount=30'");
        println!("  curl {base}/accounts/2");
        println!("  curl {base}/stats");
        if let Some(db) = &server {
            let p = db.port();
            println!("then cut the service's connections on the server side and ask again:");
            println!(
                "  mariadb -h127.0.0.1 -P{p} -uroot -N -e \"SELECT ID FROM \
                 information_schema.PROCESSLIST WHERE DB = 'test'\" \
                 | xargs -n1 mariadb-admin -h127.0.0.1 -P{p} -uroot kill"
            );
        }
        println!();
        app::serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
    })?;
    println!("stopped; pool: {}", app::stats_json(&pool.stats()));
    drop(pool);
    drop(runtime);
    drop(server); // stops the throwaway server, if one was started
    Ok(())
}

/// `DATABASE_URL`, or a throwaway MariaDB started for this run (stopped
/// and removed when the returned handle drops).
fn database() -> Result<(String, Option<MariaDb>), BoxError> {
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok((url, None));
    }
    println!("DATABASE_URL is not set: starting a throwaway MariaDB");
    let server = MariaDb::start()?;
    println!(
        "MariaDB on 127.0.0.1:{} (user root, no password)",
        server.port()
    );
    // Over TCP, as to a remote server: mysql_async would otherwise move a
    // local connection onto the server's unix socket.
    Ok((
        format!("{}?prefer_socket=false", server.url()),
        Some(server),
    ))
}
