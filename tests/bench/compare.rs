//! `cargo bench --bench compare --all-features`: `#[db_txn]` against raw
//! diesel + r2d2, on SQLite, MariaDB and PostgreSQL, in one process.
//!
//! Contenders ([`contenders`]): (1) raw r2d2 without the checkout ping, the
//! floor; (2) raw r2d2 with its default ping; (3) `#[db_txn]` with default
//! settings. Workloads ([`workloads`], [`recovery`]): a point-read
//! transaction, a read-modify-write transaction, read-modify-writes from 16
//! threads on pools of 4, and a server restart in the middle of a steady run
//! (MariaDB and PostgreSQL). The contenders take turns in interleaved rounds
//! so that drift hits all three alike. Then [`callgrind`] counts the client's
//! instructions per transaction: the macro's own overhead, on each backend.
//! [`backends`] runs one backend from start to end.
//!
//! Prints Markdown tables ([`report`]), the goals met or missed ([`goals`]),
//! and draws `tests/bench/chart.svg` ([`chart`]).
//!
//! A plain timing loop rather than criterion: a database round trip is
//! tens of microseconds with a long tail, the three contenders must be
//! interleaved within one process against the same servers (criterion runs
//! one benchmark after the other), and the figures wanted are per-transaction
//! median and p99 plus recovery events, not criterion's mean estimates.
//!
//! Options: `--smoke` (a few transactions each, asserts correctness only:
//! every acknowledged read-modify-write committed exactly once, no error in
//! the steady workloads; no valgrind, the chart goes to a temporary file),
//! `--no-callgrind`, `--callgrind-out DIR` (keep the callgrind files, for
//! `callgrind_annotate`), `--only sqlite,mariadb,postgres`, `--chart PATH`,
//! `--pin one|none` (see [`pin`]; default one).

mod backends;
mod callgrind;
mod chart;
mod contenders;
mod goals;
mod pin;
mod recovery;
mod report;
mod resolve;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use backends::{Opts, Results, Run, CALLGRIND_CALLS, SERVERS};
use contenders::Txn;
use workloads::Config;

struct Args {
    smoke: bool,
    pin: pin::Pin,
    callgrind: bool,
    callgrind_out: Option<PathBuf>,
    only: Vec<String>,
    chart: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        smoke: false,
        pin: pin::Pin::One,
        callgrind: true,
        callgrind_out: None,
        only: vec!["sqlite".into(), "mariadb".into(), "postgres".into()],
        chart: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            "--smoke" => out.smoke = true,
            "--no-callgrind" => out.callgrind = false,
            "--callgrind-out" => {
                out.callgrind_out =
                    Some(it.next().ok_or("--callgrind-out needs a directory")?.into())
            }
            "--pin" => {
                let how = it.next().map_or("", String::as_str);
                out.pin = pin::Pin::parse(how).ok_or("--pin takes one or none")?;
            }
            "--only" => {
                let list = it.next().ok_or("--only needs a list")?;
                out.only = list.split(',').map(str::to_owned).collect();
            }
            "--chart" => out.chart = Some(it.next().ok_or("--chart needs a path")?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(out)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, backend, variant, txn, n, url] = argv.as_slice() {
        if flag == "--callgrind-child" {
            callgrind::child(backend, variant, txn, n.parse().unwrap_or(1000), url);
            return ExitCode::SUCCESS;
        }
    }
    let args = match parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("compare: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = if args.smoke {
        Config {
            rounds: 30,
            warmup: 3,
            chunk: 1,
            block: 10,
            contention_rounds: 2,
            contention_warmup: 1,
            threads: 16,
            per_thread: 3,
        }
    } else {
        Config {
            rounds: 8000,
            warmup: 400,
            chunk: 1,
            block: 400,
            contention_rounds: 60,
            contention_warmup: 3,
            threads: 16,
            per_thread: 15,
        }
    };
    let machine = report::machine();
    let pinned = pin::pin(args.pin);
    let started = Instant::now();
    println!(
        "# db_txn benchmark{}\n",
        if args.smoke {
            " (smoke run: no timing meaning)"
        } else {
            ""
        }
    );
    println!("{machine}\n{SERVERS} CPUs: {pinned}.\n\n{cfg:?}\n");
    let mut out = Results::default();
    let opts = Opts {
        cfg,
        smoke: args.smoke,
        callgrind: args.callgrind,
        callgrind_out: args.callgrind_out.clone(),
    };
    let runs: [(&str, Run); 3] = [
        ("sqlite", backends::sqlite),
        ("mariadb", backends::mariadb),
        ("postgres", backends::postgres),
    ];
    for (name, run) in runs {
        if args.only.iter().any(|o| o == name) {
            eprintln!("{name}:");
            run(&opts, &mut out);
        }
    }
    println!(
        "## µs per transaction\n\n{}",
        report::latency_table(&out.rows)
    );
    println!(
        "## Contention throughput\n\n{}",
        report::throughput_table(&out.rows)
    );
    if !out.recoveries.is_empty() {
        println!("## Recovery\n\n{}", report::recovery_table(&out.recoveries));
    }
    if !out.resolve.rows.is_empty() {
        println!(
            "## resolve_commit: cost per transaction (off and on, interleaved)\n\n{}",
            resolve::table(&out.resolve.rows)
        );
    }
    if let Some(schemes) = &out.resolve.schemes {
        println!(
            "## PostgreSQL: transaction id or marker row\n\n{}",
            resolve::schemes_table(schemes)
        );
    }
    for (txn, what) in [
        (Txn::PointRead, "point-read"),
        (Txn::Rmw, "read-modify-write"),
    ] {
        let counts: Vec<_> = out.counts.iter().filter(|c| c.txn == txn).collect();
        if !counts.is_empty() {
            println!(
                "## Instructions per {what} (callgrind, client side, {CALLGRIND_CALLS} calls)\n\n{}",
                report::callgrind_table(&counts)
            );
        }
    }
    println!(
        "## Goals\n\n{}",
        goals::evaluate(&out.rows, &out.recoveries)
    );
    let chart = match (&args.chart, args.smoke) {
        (Some(path), _) => path.clone(),
        (None, true) => std::env::temp_dir().join("db_txn-bench-smoke-chart.svg"),
        (None, false) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bench/chart.svg"),
    };
    match chart::draw(&out.rows, &chart) {
        Ok(()) => println!("Chart: {}", chart.display()),
        Err(e) => out.problems.push(format!("chart: {e}")),
    }
    out.notes.iter().for_each(|n| println!("Note: {n}."));
    println!("Finished in {:.0} s.", started.elapsed().as_secs_f64());
    if out.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("\n## Correctness problems\n");
        out.problems.iter().for_each(|p| println!("- {p}"));
        ExitCode::FAILURE
    }
}
