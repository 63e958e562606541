//! A periodic job that idles longer than the server's `wait_timeout` between
//! runs: the APScheduler story of the seeds (a job failing with "2006 MySQL
//! server has gone away" every morning after a quiet night), without
//! `pool_recycle`, `pool_pre_ping` or an `auto_rollback` decorator.
//!
//! ```sh
//! cargo run --example scheduled_job --features mysql
//! ```
//!
//! The job fills in the missing `total_supply` of tokens (the seed's
//! crawler) every `JOB_EVERY_SECS` (default 3) seconds, `JOB_RUNS` (default
//! 4) times. A "web" thread registers a new token shortly after each run,
//! through the same installed pool; then everything is quiet until the next
//! run, 2.7 s later, and the server drops connections idle for 2 s:
//!
//! * on the throwaway MariaDB started when `DATABASE_URL` is unset, the
//!   server's own `wait_timeout` is 2 s (`SET GLOBAL`, as on the seed's
//!   server whose `wait_timeout` was 12). The pool read it at connect and
//!   retires a connection before the server drops it: `recycled` counts
//!   them, and no dead connection is ever touched (`disconnects` stays 0);
//! * with `DATABASE_URL`, each session sets `wait_timeout = 2` itself
//!   (`PoolBuilder::on_connect`); the pool reads the limit after the hook,
//!   so it retires those connections the same way (`recycled`).
//!
//! Either way every run succeeds. `RUST_LOG` sets the log filter
//! (`db_txn=debug,info`; default `info`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use db_txn::{db_txn, Pool, PoolStats};
use db_txn_tests::MariaDb;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Unsigned;
use diesel::MysqlConnection;

diesel::table! {
    job_tokens (id) {
        id -> BigInt,
        address -> Varchar,
        total_supply -> Nullable<BigInt>,
    }
}

/// A token whose supply the job has yet to fill in.
#[derive(Queryable, Selectable)]
#[diesel(table_name = job_tokens)]
#[diesel(check_for_backend(diesel::mysql::Mysql))]
struct Pending {
    id: i64,
    address: String,
}

/// The job: every token whose `total_supply` is still unknown gets it.
#[db_txn]
fn update_supplies(conn: &mut MysqlConnection) -> Result<usize, db_txn::Error> {
    let pending: Vec<Pending> = job_tokens::table
        .filter(job_tokens::total_supply.is_null())
        .select(Pending::as_select())
        .load(conn)?;
    for token in &pending {
        // A stand-in for the crawler's call to the chain.
        let supply = token.address.bytes().map(i64::from).sum::<i64>() * 1_000;
        diesel::update(job_tokens::table.find(token.id))
            .set(job_tokens::total_supply.eq(supply))
            .execute(conn)?;
    }
    Ok(pending.len())
}

/// The web part: a request that registers a token.
#[db_txn]
fn register_token(conn: &mut MysqlConnection, address: &str) -> Result<(), db_txn::Error> {
    diesel::insert_into(job_tokens::table)
        .values(job_tokens::address.eq(address))
        .execute(conn)?;
    Ok(())
}

/// How many tokens still lack a supply.
#[db_txn(read_only)]
pub fn unfilled(conn: &mut MysqlConnection) -> Result<i64, db_txn::Error> {
    Ok(job_tokens::table
        .filter(job_tokens::total_supply.is_null())
        .count()
        .get_result(conn)?)
}

/// `wait_timeout` of the connection it runs on (or of the server, with
/// `GLOBAL`), in seconds.
fn set_wait_timeout(conn: &mut MysqlConnection, scope: Scope, secs: u32) -> QueryResult<()> {
    let sql = match scope {
        Scope::Session => "SET SESSION wait_timeout = ?",
        Scope::Global => "SET GLOBAL wait_timeout = ?",
    };
    diesel::sql_query(sql)
        .bind::<Unsigned<diesel::sql_types::Integer>, _>(secs)
        .execute(conn)
        .map(drop)
}

#[derive(Clone, Copy)]
enum Scope {
    Session,
    Global,
}

/// Build the pool for `url`, create the table (with two tokens waiting),
/// and install the pool for the whole program. `session_wait_timeout`: a
/// `wait_timeout` each new session sets on itself.
pub fn setup(
    url: &str,
    session_wait_timeout: Option<u32>,
) -> Result<Pool<MysqlConnection>, db_txn::Error> {
    let mut builder = Pool::<MysqlConnection>::builder(url).max_size(4);
    if let Some(secs) = session_wait_timeout {
        builder = builder.on_connect(move |c| set_wait_timeout(c, Scope::Session, secs));
    }
    let pool = builder.build()?;
    let mut conn = pool.get()?;
    conn.batch_execute(
        "DROP TABLE IF EXISTS job_tokens;
         CREATE TABLE job_tokens (
             id BIGINT AUTO_INCREMENT PRIMARY KEY,
             address VARCHAR(64) NOT NULL,
             total_supply BIGINT NULL
         ) ENGINE = InnoDB",
    )?;
    diesel::insert_into(job_tokens::table)
        .values(&vec![
            job_tokens::address.eq("0xseed-a"),
            job_tokens::address.eq("0xseed-b"),
        ])
        .execute(&mut *conn)?;
    drop(conn);
    db_txn::install(pool.clone());
    Ok(pool)
}

/// When and how often.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Job runs; the web part serves one request after each but the last.
    pub runs: usize,
    /// Time between two job runs.
    pub every: Duration,
}

/// Something that happened, for the caller to print.
pub enum Event<'a> {
    Job {
        run: usize,
        at: Duration,
        result: &'a Result<usize, db_txn::Error>,
        stats: PoolStats,
    },
    Web {
        at: Duration,
        address: &'a str,
        result: &'a Result<(), db_txn::Error>,
    },
}

/// What a schedule did.
pub struct Summary {
    /// Each run's outcome: tokens filled in.
    pub runs: Vec<Result<usize, db_txn::Error>>,
    /// Each web request's outcome.
    pub requests: Vec<Result<(), db_txn::Error>>,
    /// The installed pool's counters at the end.
    pub stats: PoolStats,
}

impl Summary {
    /// Every run and every request succeeded.
    pub fn all_ok(&self) -> bool {
        self.runs.iter().all(Result::is_ok) && self.requests.iter().all(Result::is_ok)
    }
}

/// Run the job `schedule.runs` times on its own thread, and the web part on
/// another, both through the installed pool.
pub fn run(schedule: Schedule, on_event: &(dyn Fn(Event<'_>) + Sync)) -> Summary {
    let pool = db_txn::installed::<MysqlConnection>().expect("setup() installs the pool");
    let start = Instant::now();
    let sleep_until = |at: Duration| thread::sleep(at.saturating_sub(start.elapsed()));
    let done = AtomicBool::new(false);
    let (runs, requests) = thread::scope(|s| {
        let job = s.spawn(|| {
            let mut outcomes = Vec::new();
            for run in 1..=schedule.runs {
                sleep_until(schedule.every * (run as u32 - 1));
                let result = update_supplies();
                on_event(Event::Job {
                    run,
                    at: start.elapsed(),
                    result: &result,
                    stats: pool.stats(),
                });
                outcomes.push(result);
            }
            done.store(true, Ordering::Relaxed);
            outcomes
        });
        let web = s.spawn(|| {
            let mut outcomes = Vec::new();
            // A moment after each run; then all is quiet until the next one.
            for n in 1..schedule.runs {
                sleep_until(schedule.every * (n as u32 - 1) + schedule.every / 10);
                if done.load(Ordering::Relaxed) {
                    break;
                }
                let address = format!("0xweb-{n}");
                let result = register_token(&address);
                on_event(Event::Web {
                    at: start.elapsed(),
                    address: &address,
                    result: &result,
                });
                outcomes.push(result);
            }
            outcomes
        });
        (
            job.join().expect("the job thread panicked"),
            web.join().expect("the web thread panicked"),
        )
    });
    Summary {
        runs,
        requests,
        stats: pool.stats(),
    }
}

fn print_event(event: Event<'_>) {
    match event {
        Event::Job {
            run,
            at,
            result,
            stats: s,
        } => {
            let outcome = match result {
                Ok(n) => format!("filled {n} token(s)"),
                Err(e) => format!("FAILED: {e}"),
            };
            println!(
                "{:>5.1}s  job run {run}: {outcome:<20} pool: opened {}, recycled {}, pings {}, \
                 disconnects {}, retries {}",
                at.as_secs_f64(),
                s.opened,
                s.recycled,
                s.pings,
                s.disconnects,
                s.retries
            );
        }
        Event::Web {
            at,
            address,
            result,
        } => match result {
            Ok(()) => println!("{:>5.1}s  web: registered {address}", at.as_secs_f64()),
            Err(e) => println!(
                "{:>5.1}s  web: FAILED to register {address}: {e}",
                at.as_secs_f64()
            ),
        },
    }
}

fn env_number(name: &str, default: u64) -> Result<u64, String> {
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
    let schedule = Schedule {
        runs: usize::try_from(env_number("JOB_RUNS", 4)?)?,
        every: Duration::from_secs(env_number("JOB_EVERY_SECS", 3)?),
    };
    const WAIT_TIMEOUT: u32 = 2;

    let (url, server, session_wait_timeout) = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            println!("DATABASE_URL given: each session sets wait_timeout = {WAIT_TIMEOUT}");
            (url, None, Some(WAIT_TIMEOUT))
        }
        Err(_) => {
            println!("DATABASE_URL is not set: starting a throwaway MariaDB");
            let db = MariaDb::start()?;
            set_wait_timeout(
                &mut MysqlConnection::establish(&db.url())?,
                Scope::Global,
                WAIT_TIMEOUT,
            )?;
            println!(
                "MariaDB on 127.0.0.1:{}, SET GLOBAL wait_timeout = {WAIT_TIMEOUT}",
                db.port()
            );
            (db.url(), Some(db), None)
        }
    };
    let _pool = setup(&url, session_wait_timeout)?;
    println!(
        "job: {} runs, one every {:?}; the server drops a connection idle for {WAIT_TIMEOUT}s\n",
        schedule.runs, schedule.every
    );

    let summary = run(schedule, &print_event);
    let s = summary.stats;
    println!(
        "\npool: {} checkouts, {} opened, {} closed, {} recycled before the server's limit, \
         {} pings ({} skipped), {} dead connections found at checkout, {} retries",
        s.checkouts,
        s.opened,
        s.closed,
        s.recycled,
        s.pings,
        s.pings_skipped,
        s.disconnects,
        s.retries
    );
    println!("tokens still without a supply: {}", unfilled()?);
    drop(server);
    if !summary.all_ok() {
        return Err("a run or a request failed".into());
    }
    println!("every run and every request succeeded");
    Ok(())
}
