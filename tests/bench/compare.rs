//! `cargo bench -p db_txn_bench`: `#[db_txn]` against hand-written
//! diesel + r2d2, on SQLite, MariaDB and PostgreSQL; see BENCHMARKS.md.
//!
//! The parent runs the whole comparison [`args::RUNS`] times (`--runs K`),
//! each run a child process of its own ([`runs`], [`run`]) with its own
//! throwaway servers, and reports every figure as its median over the runs
//! with the run-to-run range ([`aggregate`]).
//!
//! Contenders ([`contenders`], [`diesel_sync`]): hand-written diesel + r2d2
//! with and without r2d2's checkout ping, with `conn.transaction` and (on
//! SQLite) `conn.immediate_transaction`: the baselines; and `#[db_txn]` with
//! default settings. Workloads ([`workloads`], [`idle`], [`recovery`]): a
//! point-read, a read-modify-write, read-modify-writes from 16 threads on
//! pools of 4, a point-read after an idle gap longer than the ping window,
//! and a server restart in the middle of a steady run (MariaDB and
//! PostgreSQL). The contenders take turns so that drift hits all alike.
//! [`callgrind`] counts the client's instructions per transaction (in the
//! first run: the counts repeat). [`begin_probe`] sees which BEGIN
//! `#[db_txn]` sends on SQLite, which picks the matching SQLite baseline.
//!
//! Two more parts, in every run after the comparison, on MariaDB and
//! PostgreSQL: [`resolve`] (`resolve_commit` off and on, with the round
//! trips and what the server wrote, [`counted`]) and [`replicas`] (pools with
//! and without a read replica). `--only` keeps some backends and some parts
//! (`compare`, `resolve`, `replicas`).
//!
//! Prints the report as Markdown ([`report`], [`tables`], [`goals`], [`load`]),
//! writes it into a file with `--markdown PATH` ([`markdown`]), and draws
//! the chart ([`chart`]) into `--chart PATH` (default: a temporary file).
//!
//! A plain timing loop rather than criterion: a database round trip is
//! tens of microseconds with a long tail, the contenders must be interleaved
//! within one process against the same servers (criterion runs one
//! benchmark after the other), and the figures wanted are per-transaction
//! median and p99 plus recovery events, not criterion's mean estimates.

mod aggregate;
mod args;
mod begin_probe;
mod callgrind;
mod chart;
mod contenders;
mod counted;
mod diesel_sync;
mod goals;
mod idle;
mod load;
mod markdown;
mod pad;
mod pin;
mod recovery;
mod replicas;
mod report;
mod resolve;
mod results;
mod run;
mod runs;
mod tables;
mod workloads;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aggregate::Runs;
use begin_probe::Begins;
use contenders::Backend;
use load::{CpuTimes, Load};
use report::{About, Context};
use run::Part;
use workloads::Config;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let child = match argv.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--callgrind-child", backend, variant, txn, n, url] => {
            callgrind::child(backend, variant, txn, n.parse().unwrap_or(1000), url);
            Some(Ok(()))
        }
        ["--run-child", opts, result] => Some(runs::child(Path::new(opts), Path::new(result))),
        ["--begin-probe", file] => Some(begin_probe::child(file)),
        _ => None,
    };
    match child {
        Some(Ok(())) => ExitCode::SUCCESS,
        Some(Err(e)) => {
            eprintln!("compare: {e}");
            ExitCode::FAILURE
        }
        None => parent(&argv),
    }
}

/// The workloads' sizes; `chunk` transactions per turn (`--chunk`), the
/// same number of transactions in all.
fn config(smoke: bool, chunk: usize) -> Config {
    if smoke {
        Config {
            rounds: 30usize.div_ceil(chunk),
            warmup: 3usize.div_ceil(chunk),
            chunk,
            contention_rounds: 2,
            contention_warmup: 1,
            threads: 16,
            per_thread: 3,
            idle_calls: 2,
            counted: 20,
            recovery_before: Duration::from_millis(300),
            recovery_limit: Duration::from_secs(1),
        }
    } else {
        Config {
            rounds: 3000usize.div_ceil(chunk),
            warmup: 300usize.div_ceil(chunk),
            chunk,
            contention_rounds: 20,
            contention_warmup: 2,
            threads: 16,
            per_thread: 15,
            idle_calls: 10,
            counted: 2000,
            recovery_before: Duration::from_secs(1),
            recovery_limit: Duration::from_secs(2),
        }
    }
}

/// `git` on the workspace: the commit, and whether tracked files differed.
fn commit() -> String {
    let root = args::root();
    let root = root.to_string_lossy();
    let head = load::command("git", &["-C", &root, "rev-parse", "--short", "HEAD"]);
    let dirty = load::command(
        "git",
        &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
    );
    match dirty.as_str() {
        "" => format!("commit {head}"),
        _ => format!("commit {head} with uncommitted changes"),
    }
}

fn parent(argv: &[String]) -> ExitCode {
    let args = match args::parse(argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before any child or server: they inherit the mask.
    let mut load = Load::start(pin::pin(args.pin));
    let started = Instant::now();
    let commit = commit();
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("compare: a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let begins = if args.only.contains(&Backend::Sqlite) && args.parts.contains(&Part::Compare) {
        Begins::probe(dir.path()).unwrap_or_else(|e| {
            notes.push(format!(
                "the BEGIN probe failed ({e}): SQLite is judged against \
                 `immediate_transaction`"
            ));
            Begins::default()
        })
    } else {
        Begins::default()
    };
    let cfg = config(args.smoke, args.chunk);
    let mut results = Vec::new();
    for index in 0..args.runs {
        eprintln!("run {} of {}:", index + 1, args.runs);
        let opts = run::Opts {
            cfg,
            smoke: args.smoke,
            callgrind: args.callgrind && index == 0,
            callgrind_out: args.callgrind_out.clone(),
            only: args.only.clone(),
            parts: args.parts.clone(),
            index,
        };
        let before = CpuTimes::now();
        match runs::spawn(&opts, dir.path()) {
            Ok(r) => results.push(r),
            Err(e) => problems.push(format!("run {}: {e}", index + 1)),
        }
        load.run(&before, &CpuTimes::now());
    }
    load.finish();
    let command = if args.smoke {
        "cargo test -p db_txn_bench --bench compare --"
    } else {
        "cargo bench -p db_txn_bench --"
    };
    let about = About {
        command: format!("{command} {}", args.given.join(" "))
            .trim_end_matches([' ', '-'])
            .to_string(),
        runs_asked: args.runs,
        cfg,
        smoke: args.smoke,
        commit,
        seconds: started.elapsed().as_secs_f64(),
        machine: load::machine(),
    };
    let ctx = Context {
        runs: Runs(&results),
        begins: &begins,
        load: &load,
        run: &about,
    };
    let doc = report::document(&ctx);
    println!("{doc}");
    let chart = args
        .chart
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("db_txn-bench-chart.svg"));
    match chart::draw(&ctx.runs, &chart) {
        Ok(()) => println!("Chart: {}", chart.display()),
        Err(e) => problems.push(format!("chart: {e}")),
    }
    if args.smoke {
        if let Err(e) = callgrind::check_readers() {
            problems.push(e);
        }
        if let Err(e) = workloads::check_order() {
            problems.push(e);
        }
        if let Err(e) = begin_probe::check_sql_of() {
            problems.push(e);
        }
        if let Err(e) = recovery::check_first_ok() {
            problems.push(e);
        }
        // What `--markdown BENCHMARKS.md` would do, on a copy.
        if let Err(e) = markdown::check(&args::root().join("BENCHMARKS.md"), dir.path(), &doc) {
            problems.push(format!("--markdown: {e}"));
        }
    }
    if let Some(path) = &args.markdown {
        match markdown::write(path, &doc) {
            Ok(()) => println!("Report written into {}", path.display()),
            Err(e) => problems.push(format!("--markdown: {e}")),
        }
    }
    finish(&results, problems, notes)
}

/// Notes, then the correctness problems of every run: any makes the exit
/// status a failure (a missed goal does not).
fn finish(
    results: &[results::RunResult],
    mut problems: Vec<String>,
    mut notes: Vec<String>,
) -> ExitCode {
    for r in results {
        for n in &r.notes {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
        problems.extend(r.problems.iter().cloned());
    }
    notes.iter().for_each(|n| println!("Note: {n}."));
    if problems.is_empty() {
        return ExitCode::SUCCESS;
    }
    println!("\n## Correctness problems\n");
    problems.iter().for_each(|p| println!("- {p}"));
    ExitCode::FAILURE
}
