//! The gunicorn story of the seeds: a master process builds the pool, uses
//! it, then `fork()`s workers that inherit it. With a pool that is not
//! fork-safe, workers share the master's socket, and one worker closing it
//! (or two talking over it at once) gives everyone "2006 MySQL server has
//! gone away"; the seeds' cure was to recreate the engine in every request.
//!
//! ```sh
//! cargo run --example prefork --features mysql
//! ```
//!
//! `DATABASE_URL` names the database (default: a throwaway MariaDB);
//! `WORKERS` (default 3) and `REQUESTS` (default 3, per worker) size the
//! run; `RUST_LOG` sets the log filter (`db_txn=debug,info`; default `info`).
//!
//! With `db_txn`, a forked worker's first call opens a connection of its
//! own, and the worker never writes to, nor closes, the master's. The
//! master checks, after its workers exited, that it still talks over the
//! very connection it had before the fork and opened no other.

use std::collections::BTreeSet;
use std::io::Write;

use db_txn::{db_txn, Pool, PoolStats};
use db_txn_tests::MariaDb;
use diesel::connection::SimpleConnection;
use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::MysqlConnection;

diesel::table! {
    prefork_requests (worker, n) {
        worker -> BigInt,
        n -> BigInt,
        connection_id -> BigInt,
    }
}

/// The server's id of the connection `conn`.
fn server_connection_id(conn: &mut MysqlConnection) -> QueryResult<i64> {
    diesel::select(sql::<BigInt>("CAST(CONNECTION_ID() AS SIGNED)")).get_result(conn)
}

/// The server's id of the connection this call runs on.
#[db_txn]
fn connection_id(conn: &mut MysqlConnection) -> Result<i64, db_txn::Error> {
    Ok(server_connection_id(conn)?)
}

/// One request served by a worker; returns the connection that served it.
#[db_txn]
fn serve_request(conn: &mut MysqlConnection, worker: i64, n: i64) -> Result<i64, db_txn::Error> {
    let id = server_connection_id(conn)?;
    diesel::insert_into(prefork_requests::table)
        .values((
            prefork_requests::worker.eq(worker),
            prefork_requests::n.eq(n),
            prefork_requests::connection_id.eq(id),
        ))
        .execute(conn)?;
    Ok(id)
}

/// How many requests `worker` recorded.
#[db_txn(read_only)]
fn served_by(conn: &mut MysqlConnection, worker: i64) -> Result<i64, db_txn::Error> {
    Ok(prefork_requests::table
        .filter(prefork_requests::worker.eq(worker))
        .count()
        .get_result(conn)?)
}

/// Build the pool for `url`, create the table, and install the pool.
pub fn setup(url: &str) -> Result<Pool<MysqlConnection>, db_txn::Error> {
    let pool = Pool::<MysqlConnection>::builder(url).max_size(4).build()?;
    pool.get()?.batch_execute(
        "DROP TABLE IF EXISTS prefork_requests;
         CREATE TABLE prefork_requests (
             worker BIGINT NOT NULL,
             n BIGINT NOT NULL,
             connection_id BIGINT NOT NULL,
             PRIMARY KEY (worker, n)
         ) ENGINE = InnoDB",
    )?;
    db_txn::install(pool.clone());
    Ok(pool)
}

/// A worker's exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_DB_ERROR: i32 = 1;
pub const EXIT_USED_PARENTS_CONNECTION: i32 = 2;

/// What one worker did, as the master saw it.
#[derive(Debug)]
pub struct Worker {
    pub number: i64,
    pub pid: libc::pid_t,
    /// The exit code, or `None` if it died of a signal.
    pub exit_code: Option<i32>,
    /// Requests it recorded in the database.
    pub served: i64,
}

/// What the master saw.
#[derive(Debug)]
pub struct Report {
    /// The master's connection id before the fork and after the workers exited.
    pub parent_connection: (i64, i64),
    /// The master's pool counters before the fork and at the end.
    pub parent_stats: (PoolStats, PoolStats),
    pub workers: Vec<Worker>,
}

impl Report {
    /// Why the run is not what fork safety promises, if it is not.
    pub fn problems(&self, requests: i64) -> Vec<String> {
        let mut problems = Vec::new();
        let (before, after) = self.parent_connection;
        if before != after {
            problems.push(format!(
                "the master's connection changed: {before} -> {after}"
            ));
        }
        let (s0, s1) = self.parent_stats;
        if s1.opened != s0.opened {
            problems.push(format!(
                "the master opened {} connection(s)",
                s1.opened - s0.opened
            ));
        }
        if (s1.disconnects, s1.retries) != (s0.disconnects, s0.retries) {
            problems.push(format!("the master saw a lost connection: {s1:?}"));
        }
        for w in &self.workers {
            if w.exit_code != Some(EXIT_OK) {
                problems.push(format!(
                    "worker {} (pid {}) exited with {:?}",
                    w.number, w.pid, w.exit_code
                ));
            }
            if w.served != requests {
                problems.push(format!(
                    "worker {} recorded {} of {requests} requests",
                    w.number, w.served
                ));
            }
        }
        problems
    }
}

/// Fork `workers` workers from the calling process, each serving `requests`
/// requests through the installed pool, wait for them, and use the pool
/// again in the master. Call it while no other thread of the process is
/// inside the pool or writing to stdout, as a prefork master does.
pub fn prefork(workers: i64, requests: i64) -> Result<Report, db_txn::Error> {
    let pool = db_txn::installed::<MysqlConnection>().expect("setup() installs the pool");
    // The master uses the pool before forking, as a master that loads its
    // configuration from the database does: its connection is now open.
    let parent_before = connection_id()?;
    let stats_before = pool.stats();
    println!(
        "master (pid {}): connection {parent_before}",
        std::process::id()
    );

    let mut pids = Vec::new();
    for number in 1..=workers {
        // Nothing buffered may be printed twice by the child.
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: the child runs this program's single thread from here and
        // leaves with `_exit`, never returning into the caller.
        match unsafe { libc::fork() } {
            -1 => panic!("fork: {}", std::io::Error::last_os_error()),
            0 => {
                let code = worker(number, requests, parent_before, &pool);
                let _ = std::io::stdout().flush();
                // SAFETY: ends the child without running the parent's exit
                // handlers or destructors (a gunicorn worker's os._exit).
                unsafe { libc::_exit(code) }
            }
            pid => pids.push((number, pid)),
        }
    }

    let mut done = Vec::new();
    for (number, pid) in pids {
        let mut status = 0;
        // SAFETY: waits for a child forked above.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(waited, pid, "waitpid: {}", std::io::Error::last_os_error());
        let exit_code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        done.push((number, pid, exit_code));
    }

    // The master again, on the connection it had before the fork.
    let parent_after = connection_id()?;
    let mut report = Report {
        parent_connection: (parent_before, parent_after),
        parent_stats: (stats_before, PoolStats::default()),
        workers: Vec::new(),
    };
    for (number, pid, exit_code) in done {
        report.workers.push(Worker {
            number,
            pid,
            exit_code,
            served: served_by(number)?,
        });
    }
    report.parent_stats.1 = pool.stats();
    println!(
        "master (pid {}): connection {parent_after} after the workers exited; pool opened {} \
         connection(s) in all",
        std::process::id(),
        report.parent_stats.1.opened
    );
    Ok(report)
}

/// A worker's life: serve `requests` requests, report, return the exit code.
fn worker(number: i64, requests: i64, parent: i64, pool: &Pool<MysqlConnection>) -> i32 {
    let opened_before = pool.stats().opened; // the master's count, inherited
    let mut used = BTreeSet::new();
    for n in 1..=requests {
        match serve_request(number, n) {
            Ok(id) => {
                used.insert(id);
            }
            Err(e) => {
                eprintln!("worker {number}: request {n} failed: {e}");
                return EXIT_DB_ERROR;
            }
        }
    }
    println!(
        "worker {number} (pid {}): served {requests} requests on connection {used:?}, \
         opened {} connection(s) of its own; the master's is {parent}",
        std::process::id(),
        pool.stats().opened - opened_before
    );
    if used.contains(&parent) {
        eprintln!("worker {number}: used the master's connection {parent}");
        return EXIT_USED_PARENTS_CONNECTION;
    }
    EXIT_OK
}

fn env_number(name: &str, default: i64) -> Result<i64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

type BoxError = Box<dyn std::error::Error>;

/// Logs through `tracing`. `RUST_LOG` is a list of `target=level` and
/// `level` (`db_txn=debug,info`); the default is `info`.
fn init_logs() -> Result<(), BoxError> {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = match std::env::var("RUST_LOG") {
        Ok(list) => list
            .parse::<Targets>()
            .map_err(|e| format!("RUST_LOG={list:?}: {e}"))?,
        Err(_) => Targets::new().with_default(LevelFilter::INFO),
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(filter)
        .init();
    Ok(())
}

fn main() -> Result<(), BoxError> {
    init_logs()?;
    let (workers, requests) = (env_number("WORKERS", 3)?, env_number("REQUESTS", 3)?);
    let (url, server) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            println!("DATABASE_URL is not set: starting a throwaway MariaDB");
            let db = MariaDb::start()?;
            (db.url(), Some(db))
        }
    };
    let _pool = setup(&url)?;

    let report = prefork(workers, requests)?;
    drop(server);
    let problems = report.problems(requests);
    if !problems.is_empty() {
        return Err(problems.join("; ").into());
    }
    println!(
        "{workers} workers served {} requests on connections of their own; the master's \
         connection survived them",
        workers * requests
    );
    Ok(())
}
