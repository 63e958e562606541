//! One run of the comparison, in a process of its own (see [`crate::runs`]):
//! the servers and databases of every backend, the steady workloads backend
//! by backend, the idle-gap workload over all backends at once, the recovery
//! runs, the consistency check, and (when asked) the instruction counts;
//! then the `resolve_commit` table on the same servers, and the read-replica
//! table on servers of its own (each part when `--only` keeps it).

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use diesel::Connection;
use serde::{Deserialize, Serialize};

use crate::contenders::{database_name, Backend, Contender, Subject, Txn};
use crate::results::{Counts, RecoveryRow, Row, RunResult};
use crate::workloads::{self, Config, Samples, Tally, Workload};
use crate::{callgrind, diesel_sync, idle, recovery, replicas, resolve};

/// The parts of the program, each with tables of its own (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Part {
    /// `#[db_txn]` against the hand-written contenders: steady, contention,
    /// idle gaps, recovery, instruction counts.
    Compare,
    /// `resolve_commit` off and on ([`crate::resolve`]; on the servers).
    Resolve,
    /// Pools with and without a read replica ([`crate::replicas`]; on the
    /// servers).
    Replicas,
}

impl Part {
    pub const ALL: [Part; 3] = [Part::Compare, Part::Resolve, Part::Replicas];

    /// The name on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Part::Compare => "compare",
            Part::Resolve => "resolve",
            Part::Replicas => "replicas",
        }
    }

    pub fn parse(key: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.key() == key)
    }

    /// Whether it runs on `backend`.
    pub fn runs_on(self, backend: Backend) -> bool {
        self == Part::Compare || backend != Backend::Sqlite
    }
}

/// What a run does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Opts {
    pub cfg: Config,
    pub smoke: bool,
    /// Count instructions (in this run; the counts repeat, one run is enough).
    pub callgrind: bool,
    pub callgrind_out: Option<PathBuf>,
    pub only: Vec<Backend>,
    pub parts: Vec<Part>,
    /// This run's number from 0: shifts the idle workload's orders.
    pub index: usize,
}

impl Opts {
    fn runs(&self, part: Part, backend: Backend) -> bool {
        self.parts.contains(&part) && part.runs_on(backend)
    }
}

/// Transactions counted per variant, backend and kind.
pub const CALLGRIND_CALLS: u64 = 2000;

/// Where a backend's databases live.
enum Server {
    Sqlite(tempfile::TempDir),
    MariaDb(db_txn_tests::MariaDb),
    Postgres(db_txn_tests::Postgres),
}

impl Server {
    fn start(backend: Backend) -> Server {
        fn fail<T>(e: db_txn_tests::KitError) -> T {
            panic!("{e}")
        }
        match backend {
            Backend::Sqlite => Server::Sqlite(
                tempfile::Builder::new()
                    .prefix("db_txn-bench-sqlite")
                    .tempdir_in(db_txn_tests::cleanup::base_dir())
                    .expect("temporary directory"),
            ),
            Backend::MariaDb => {
                Server::MariaDb(db_txn_tests::MariaDb::start().unwrap_or_else(fail))
            }
            Backend::Postgres => {
                Server::Postgres(db_txn_tests::Postgres::start().unwrap_or_else(fail))
            }
        }
    }

    /// An empty database (SQLite: a file) named `name`: its URL.
    fn database(&self, name: &str) -> String {
        match self {
            Server::Sqlite(dir) => {
                let file = dir.path().join(format!("{name}.db"));
                file.to_string_lossy().into_owned()
            }
            Server::MariaDb(server) => server.create_database(name),
            Server::Postgres(server) => server.create_database(name),
        }
    }

    /// A graceful restart, in its two halves, and a connect that says
    /// whether the server accepts connections: for the recovery workload
    /// (servers only).
    fn restart(&self) -> Option<recovery::Restarter<'_>> {
        match self {
            Server::Sqlite(_) => None,
            Server::MariaDb(server) => Some(recovery::Restarter {
                stop: Box::new(|| server.stop()),
                start: Box::new(|| server.start_again()),
                connect: Box::new(move || timed_connect::<diesel::MysqlConnection>(&server.url())),
            }),
            Server::Postgres(server) => Some(recovery::Restarter {
                stop: Box::new(|| server.stop()),
                start: Box::new(|| server.start_again()),
                connect: Box::new(move || timed_connect::<diesel::PgConnection>(&server.url())),
            }),
        }
    }
}

/// One connect to `url`: how long it took, or why it failed.
fn timed_connect<C: Connection>(url: &str) -> Result<Duration, String> {
    let t = Instant::now();
    C::establish(url).map_err(|e| format!("connect to {url}: {e}"))?;
    Ok(t.elapsed())
}

/// A backend set up: its server, its contenders, what they got acknowledged.
struct Setup<'a> {
    server: &'a Server,
    subject: Box<dyn Subject>,
    tally: Tally,
}

impl Setup<'_> {
    fn new(backend: Backend, server: &Server) -> Setup<'_> {
        let tag = &backend.key()[..1];
        let url = |who: Contender| server.database(&database_name(tag, who));
        let subject: Box<dyn Subject> = match backend {
            Backend::Sqlite => Box::new(diesel_sync::sqlite::Bench::new(url)),
            Backend::MariaDb => Box::new(diesel_sync::mysql::Bench::new(url)),
            Backend::Postgres => Box::new(diesel_sync::postgres::Bench::new(url)),
        };
        let tally = Tally::new(subject.contenders().len());
        Setup {
            server,
            subject,
            tally,
        }
    }
}

/// Prints how long `f` took.
fn timed<T>(backend: Backend, what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    eprintln!(
        "  {} {what}: {:.1} s",
        backend.label(),
        t.elapsed().as_secs_f64()
    );
    out
}

/// The whole run.
pub fn run(opts: &Opts) -> RunResult {
    let mut out = RunResult::default();
    let servers: Vec<(Backend, Server)> = (opts.only.iter())
        .filter(|b| opts.runs(Part::Compare, **b) || opts.runs(Part::Resolve, **b))
        .map(|b| (*b, Server::start(*b)))
        .collect();
    if opts.parts.contains(&Part::Compare) {
        compare(&servers, opts, &mut out);
    }
    if opts.parts.contains(&Part::Resolve) {
        for (backend, server) in &servers {
            let what = "resolve_commit off and on";
            match server {
                Server::Sqlite(_) => {}
                Server::MariaDb(s) => timed(*backend, what, || {
                    resolve::mariadb(s, &opts.cfg, &mut out);
                }),
                Server::Postgres(s) => timed(*backend, what, || {
                    resolve::postgres(s, &opts.cfg, &mut out);
                }),
            }
        }
    }
    // Stopped before the replicas' servers start.
    drop(servers);
    for backend in &opts.only {
        if !opts.runs(Part::Replicas, *backend) {
            continue;
        }
        timed(
            *backend,
            "replicas (servers started and stopped)",
            || match backend {
                Backend::MariaDb => replicas::mariadb(&opts.cfg, &mut out),
                Backend::Postgres => replicas::postgres(&opts.cfg, &mut out),
                Backend::Sqlite => {}
            },
        );
    }
    out
}

/// The comparison of the contenders on `servers`.
fn compare(servers: &[(Backend, Server)], opts: &Opts, out: &mut RunResult) {
    let setups: Vec<Setup> = servers.iter().map(|(b, s)| Setup::new(*b, s)).collect();
    for setup in &setups {
        steady(setup, &opts.cfg, out);
    }
    idle_gaps(&setups, opts, out);
    for setup in &setups {
        let times = (opts.cfg.recovery_before, opts.cfg.recovery_limit);
        recover(setup, times, out);
    }
    for setup in &setups {
        check_committed(setup, out);
        count(setup, opts, out);
    }
}

/// The indices of the contenders of `subject` that take part in `workload`.
fn part(subject: &dyn Subject, workload: Workload) -> Vec<usize> {
    let backend = subject.backend();
    let all = subject.contenders().iter().enumerate();
    all.filter(|(_, who)| workload.takes_part(backend, **who))
        .map(|(i, _)| i)
        .collect()
}

/// A row of `samples` (of the contenders that take part); errors in it are
/// problems.
fn row(
    subject: &dyn Subject,
    workload: Workload,
    samples: &[Samples],
    pings: (u64, u64),
    out: &mut RunResult,
) {
    let backend = subject.backend();
    let part: Vec<(Contender, &Samples)> = part(subject, workload)
        .into_iter()
        .map(|i| (subject.contenders()[i], &samples[i]))
        .collect();
    for (who, s) in &part {
        if s.errors > 0 {
            out.problems.push(format!(
                "{} {} {}: {} errors, first: {}",
                backend.label(),
                workload.label(),
                who.label(),
                s.errors,
                s.first_error.as_deref().unwrap_or("")
            ));
        }
    }
    out.rows.push(Row {
        backend,
        workload,
        measured: part.iter().map(|(who, s)| s.measured(*who)).collect(),
        pings,
    });
}

/// The back-to-back workloads, one after the other.
fn steady(setup: &Setup, cfg: &Config, out: &mut RunResult) {
    let subject = &*setup.subject;
    let tally = &setup.tally;
    for workload in [Workload::PointRead, Workload::Rmw, Workload::Contention] {
        let (p0, s0) = subject.db_txn_pings();
        let samples = timed(subject.backend(), workload.label(), || match workload {
            Workload::Contention => {
                workloads::contention(subject, &part(subject, workload), cfg, tally)
            }
            _ => workloads::single(subject, workload.txn(), cfg, tally),
        });
        let (p1, s1) = subject.db_txn_pings();
        row(subject, workload, &samples, (p1 - p0, s1 - s0), out);
    }
}

fn idle_gaps(setups: &[Setup], opts: &Opts, out: &mut RunResult) {
    let subjects: Vec<(&dyn Subject, &Tally)> =
        setups.iter().map(|s| (&*s.subject, &s.tally)).collect();
    let t = Instant::now();
    let calls = opts.cfg.idle_calls;
    let results = idle::run(&subjects, calls, opts.index * calls);
    eprintln!(
        "  {}: {:.1} s",
        Workload::Idle.label(),
        t.elapsed().as_secs_f64()
    );
    for ((subject, _), result) in subjects.iter().zip(results) {
        row(*subject, Workload::Idle, &result.samples, result.pings, out);
    }
}

/// The recovery workload; `#[db_txn]` callers must see no error but a
/// COMMIT cut by the restart (outcome unknown).
fn recover(setup: &Setup, times: (Duration, Duration), out: &mut RunResult) {
    let Some(restarter) = setup.server.restart() else {
        return;
    };
    let subject = &*setup.subject;
    let backend = subject.backend();
    let (restart, results) = timed(backend, "recovery", || {
        recovery::run(subject, &restarter, &setup.tally, times)
    });
    let results: Vec<_> = subject.contenders().iter().copied().zip(results).collect();
    for (who, r) in &results {
        if !who.is_baseline() && r.errors > r.commit_unknown {
            out.problems.push(format!(
                "{} recovery: {} errors reached {} callers, first: {}",
                backend.label(),
                r.errors - r.commit_unknown,
                who.label(),
                r.first_error.as_deref().unwrap_or("")
            ));
        }
    }
    out.recoveries.push(RecoveryRow {
        backend,
        restart,
        results,
    });
}

/// Every read-modify-write a caller was told committed is in the table once,
/// and nothing else but those whose outcome the caller could not know.
fn check_committed(setup: &Setup, out: &mut RunResult) {
    let subject = &*setup.subject;
    for (i, who) in subject.contenders().iter().enumerate() {
        let acked = setup.tally.acked[i].load(Relaxed) as i64;
        let uncertain = setup.tally.uncertain[i].load(Relaxed) as i64;
        let committed = subject.committed(i);
        if committed < acked || committed > acked + uncertain {
            out.problems.push(format!(
                "{} {}: {committed} read-modify-writes committed, {acked} acknowledged, \
                 {uncertain} failed",
                subject.backend().label(),
                who.label()
            ));
        }
    }
}

/// Instructions per transaction of each variant under callgrind (a smoke
/// run: a few transactions of each, without).
fn count(setup: &Setup, opts: &Opts, out: &mut RunResult) {
    let backend = setup.subject.backend();
    let db = |name: &str| setup.server.database(&format!("cg_{name}"));
    if opts.smoke {
        if let Err(e) = callgrind::smoke(backend, &db, 20) {
            out.problems.push(e);
        }
    } else if opts.callgrind && !callgrind::available() {
        note_once(
            out,
            "instruction counts skipped: valgrind is not installed (apt-get install valgrind)",
        );
    } else if opts.callgrind {
        timed(backend, "callgrind", || {
            for txn in [Txn::PointRead, Txn::Rmw] {
                let keep = opts.callgrind_out.as_deref();
                match callgrind::measure(backend, txn, &db, CALLGRIND_CALLS, keep) {
                    Ok(measured) => {
                        if measured.iter().any(|m| m.locked.is_none()) {
                            note_once(
                                out,
                                "locked instructions not counted: objdump could not read an \
                                 object file (apt-get install binutils)",
                            );
                        }
                        let column = |f: fn(&callgrind::Measured) -> Option<f64>| {
                            measured
                                .iter()
                                .filter_map(|m| Some((m.variant.clone(), f(m)?)))
                                .collect()
                        };
                        out.counts.push(Counts {
                            backend,
                            txn,
                            per_call: column(|m| Some(m.total)),
                            in_allocator: column(|m| Some(m.allocator)),
                            allocator_calls: column(|m| Some(m.allocator_calls)),
                            code_lines: column(|m| Some(m.code_lines)),
                            data_lines: column(|m| Some(m.data_lines)),
                            locked: column(|m| m.locked),
                        })
                    }
                    Err(e) => out.problems.push(format!("callgrind: {e}")),
                }
            }
        });
    }
}

/// Adds `note` to the run's notes unless it is there already.
fn note_once(out: &mut RunResult, note: &str) {
    if !out.notes.iter().any(|n| n == note) {
        out.notes.push(note.into());
    }
}
