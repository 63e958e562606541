//! One backend's run: its servers and databases, the timed workloads in
//! order, the recovery run, the consistency check, and the instruction
//! counts.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use diesel::Connection;

use crate::contenders::{self, database_name, Contender, Subject, Txn};
use crate::report::{self, RecoveryRow, Row, Workload};
use crate::workloads::{self, Config, Tally};
use crate::{callgrind, recovery};

/// Everything one backend's run adds to the report.
#[derive(Default)]
pub struct Results {
    pub rows: Vec<Row>,
    pub recoveries: Vec<RecoveryRow>,
    /// Instructions per call of each variant, per backend and transaction.
    pub counts: Vec<report::Counts>,
    /// Correctness failures: the run exits non-zero.
    pub problems: Vec<String>,
    /// What was skipped, and why.
    pub notes: Vec<String>,
    /// The cost of `resolve_commit`.
    pub resolve: crate::resolve::Results,
}

/// One backend's run.
pub type Run = fn(&Opts, &mut Results);

/// What to run.
pub struct Opts {
    pub cfg: Config,
    pub smoke: bool,
    pub callgrind: bool,
    pub callgrind_out: Option<PathBuf>,
}

/// Transactions per variant under callgrind (a smoke run: a few, without).
fn count(
    opts: &Opts,
    backend: &str,
    label: &'static str,
    db: &dyn Fn(&str) -> String,
    out: &mut Results,
) {
    if opts.smoke {
        if let Err(e) = callgrind::smoke(backend, db, 20) {
            out.problems.push(e);
        }
    } else if opts.callgrind && !callgrind::available() {
        let note =
            "instruction counts skipped: valgrind is not installed (apt-get install valgrind)";
        if !out.notes.iter().any(|n| n == note) {
            out.notes.push(note.into());
        }
    } else if opts.callgrind {
        let t = Instant::now();
        for txn in [Txn::PointRead, Txn::Rmw] {
            let keep = opts.callgrind_out.as_deref();
            match callgrind::measure(backend, txn, db, CALLGRIND_CALLS, keep) {
                Ok(per_call) => out.counts.push(report::Counts {
                    backend: label,
                    txn,
                    per_call,
                }),
                Err(e) => out.problems.push(format!("callgrind: {e}")),
            }
        }
        eprintln!("  {label} callgrind: {:.1} s", t.elapsed().as_secs_f64());
    }
}

/// Transactions counted per variant, backend and kind.
pub const CALLGRIND_CALLS: u64 = 2000;

/// A server restart and one timed connect, for the recovery workload.
struct Disrupt<'a> {
    restart: &'a (dyn Fn() + Sync),
    reconnect: &'a dyn Fn() -> Duration,
}

fn timed_connect<C: Connection>(url: &str) -> Duration {
    let t = Instant::now();
    C::establish(url).unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    t.elapsed()
}

/// Prints how long `f` took.
fn timed(backend: &str, what: &str, f: &mut dyn FnMut()) {
    let t = Instant::now();
    f();
    eprintln!("  {backend} {what}: {:.1} s", t.elapsed().as_secs_f64());
}

/// The workloads in order, then the consistency check.
fn run_backend(subject: &dyn Subject, cfg: &Config, disrupt: Option<Disrupt>, out: &mut Results) {
    let name = subject.backend();
    let tally = Tally::default();
    for workload in Workload::ALL {
        let mut samples = Default::default();
        timed(name, workload.label(), &mut || {
            samples = match workload {
                Workload::PointRead => workloads::single(subject, Txn::PointRead, cfg, &tally),
                Workload::Rmw => workloads::single(subject, Txn::Rmw, cfg, &tally),
                Workload::Contention => workloads::contention(subject, cfg, &tally),
            }
        });
        let row = Row {
            backend: name,
            workload,
            samples,
        };
        for who in Contender::ALL {
            let s = &row.samples[who.index()];
            if s.errors > 0 {
                out.problems.push(format!(
                    "{name} {} {}: {} errors in a steady workload, first: {}",
                    workload.label(),
                    who.label(),
                    s.errors,
                    s.first_error.as_deref().unwrap_or("")
                ));
            }
        }
        out.rows.push(row);
    }
    let (pings, skipped) = subject.db_txn_pings();
    eprintln!("  {name} #[db_txn] pool: {pings} pings, {skipped} skipped");
    if let Some(d) = disrupt {
        recover(subject, d, &tally, out);
    }
    check_committed(subject, &tally, out);
}

/// The recovery workload; `#[db_txn]` callers must see no error but a
/// COMMIT cut by the restart (outcome unknown).
fn recover(subject: &dyn Subject, d: Disrupt, tally: &Tally, out: &mut Results) {
    let name = subject.backend();
    let mut result = None;
    timed(name, "recovery", &mut || {
        result = Some(recovery::run(subject, d.restart, d.reconnect, tally))
    });
    let Some((restart, results)) = result else {
        return;
    };
    let ours = &results[Contender::DbTxn.index()];
    if ours.errors > ours.commit_unknown {
        out.problems.push(format!(
            "{name} recovery: {} errors reached #[db_txn] callers, first: {}",
            ours.errors - ours.commit_unknown,
            ours.first_error.as_deref().unwrap_or("")
        ));
    }
    out.recoveries.push(RecoveryRow {
        backend: name,
        restart,
        results,
    });
}

/// Every read-modify-write a caller was told committed is in the table once,
/// and nothing else but those whose outcome the caller could not know.
fn check_committed(subject: &dyn Subject, tally: &Tally, out: &mut Results) {
    for who in Contender::ALL {
        let acked = tally.acked[who.index()].load(Relaxed) as i64;
        let uncertain = tally.uncertain[who.index()].load(Relaxed) as i64;
        let committed = subject.committed(who);
        if committed < acked || committed > acked + uncertain {
            out.problems.push(format!(
                "{} {}: {committed} read-modify-writes committed, {acked} acknowledged, \
                 {uncertain} failed",
                subject.backend(),
                who.label()
            ));
        }
    }
}

pub fn sqlite(opts: &Opts, out: &mut Results) {
    let dir = tempfile::Builder::new()
        .prefix("db_txn-bench-sqlite")
        .tempdir_in(db_txn_tests::cleanup::base_dir())
        .expect("temporary directory");
    let urls = Contender::ALL.map(|who| {
        let file = dir.path().join(format!("{}.db", database_name("s", who)));
        file.to_string_lossy().into_owned()
    });
    run_backend(&contenders::sqlite::Bench::new(urls), &opts.cfg, None, out);
    let db = |variant: &str| {
        let file = dir.path().join(format!("cg_{variant}.db"));
        file.to_string_lossy().into_owned()
    };
    count(opts, "sqlite", "SQLite", &db, out);
}

pub fn mariadb(opts: &Opts, out: &mut Results) {
    let server = db_txn_tests::MariaDb::start().unwrap_or_else(|e| panic!("{e}"));
    let urls = Contender::ALL.map(|who| server.create_database(&database_name("m", who)));
    let url = server.url();
    let disrupt = Disrupt {
        restart: &|| server.restart(),
        reconnect: &|| timed_connect::<diesel::MysqlConnection>(&url),
    };
    let bench = contenders::mysql::Bench::new(urls);
    run_backend(&bench, &opts.cfg, Some(disrupt), out);
    timed("mariadb", "resolve_commit", &mut || {
        crate::resolve::mariadb(
            &server,
            &opts.cfg,
            opts.smoke,
            &mut out.resolve,
            &mut out.problems,
        )
    });
    count(
        opts,
        "mariadb",
        "MariaDB",
        &|v| server.create_database(&format!("cg_{v}")),
        out,
    );
}

pub fn postgres(opts: &Opts, out: &mut Results) {
    let server = db_txn_tests::Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let urls = Contender::ALL.map(|who| server.create_database(&database_name("p", who)));
    let url = server.url();
    let disrupt = Disrupt {
        restart: &|| server.restart(),
        reconnect: &|| timed_connect::<diesel::PgConnection>(&url),
    };
    let bench = contenders::postgres::Bench::new(urls);
    run_backend(&bench, &opts.cfg, Some(disrupt), out);
    timed("postgres", "resolve_commit", &mut || {
        crate::resolve::postgres(
            &server,
            &opts.cfg,
            opts.smoke,
            &mut out.resolve,
            &mut out.problems,
        )
    });
    count(
        opts,
        "postgres",
        "PostgreSQL",
        &|v| server.create_database(&format!("cg_{v}")),
        out,
    );
}

pub const SERVERS: &str =
    "Servers: throwaway ones started by the test kit, data directories in RAM \
(/dev/shm unless $DB_TXN_KIT_DIR) and fsync off: MariaDB with innodb_flush_log_at_trx_commit=2 \
and no doublewrite buffer, PostgreSQL with fsync=off (synchronous_commit=on costs a write, no \
fsync); SQLite files in the same place, WAL with synchronous=NORMAL (no fsync at commit). \
Loopback TCP. Pools of 4 connections for every contender; each contender has its own database.";
