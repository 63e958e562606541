//! A web service whose handlers call `#[db_txn]` functions: the gunicorn +
//! Flask-SQLAlchemy API of the seeds, without `session.remove()` after each
//! request, `pool_pre_ping`, `pool_recycle` or an `auto_rollback` decorator.
//!
//! ```sh
//! cargo run -p db_txn_web_service
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
//! `tests/web_service.rs` (`cargo test -p db_txn_web_service`) sends requests while the server KILLs the
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
        println!("then cut the service's own connections on the server side and ask again:");
        println!(
            "  curl -s {base}/debug/connections | xargs -r -n1 mariadb-admin {} kill",
            admin_args(&url)
        );
        if has_password(&url) {
            println!("  (with MYSQL_PWD set to the password in DATABASE_URL)");
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

/// `mariadb-admin` options that reach the server of `url`
/// (`mysql://user:pass@host:port/db`) as its user, without the password.
fn admin_args(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
    let user = userinfo.split(':').next().unwrap_or("");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => (hostport, "3306"),
    };
    let mut args = format!(
        "-h{} -P{port}",
        if host.is_empty() { "localhost" } else { host }
    );
    if !user.is_empty() {
        args.push_str(&format!(" -u{user}"));
    }
    args
}

fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
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
