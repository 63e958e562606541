//! The command line of the parent process (see the crate docs in
//! `compare.rs` and BENCHMARKS.md).

use std::path::{Path, PathBuf};

use crate::contenders::Backend;
use crate::pin::Pin;
use crate::run::Part;

/// Runs of the comparison by default: enough for a median and a range that
/// mean something, within a few minutes on a two-core machine.
pub const RUNS: usize = 5;

#[derive(Debug)]
pub struct Args {
    pub smoke: bool,
    pub runs: usize,
    /// Transactions a contender runs before the next takes its turn, in
    /// the single-threaded workloads (1 unless `--chunk` says).
    pub chunk: usize,
    pub pin: Pin,
    pub callgrind: bool,
    pub callgrind_out: Option<PathBuf>,
    /// The backends and the parts `--only` keeps (all when it names none).
    pub only: Vec<Backend>,
    pub parts: Vec<Part>,
    pub chart: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    /// The arguments as given (without cargo's `--bench`), for the report.
    pub given: Vec<String>,
}

/// The workspace's root: relative paths on the command line start there
/// (cargo runs a benchmark in its package's directory).
pub fn root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dir.canonicalize().unwrap_or(dir)
}

fn path(arg: Option<&String>, option: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(arg.ok_or(format!("{option} needs a path"))?);
    Ok(if p.is_absolute() { p } else { root().join(p) })
}

pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args {
        smoke: false,
        runs: 0,
        chunk: 1,
        pin: Pin::One,
        callgrind: true,
        callgrind_out: None,
        only: Vec::new(),
        parts: Vec::new(),
        chart: None,
        markdown: None,
        given: Vec::new(),
    };
    let mut runs = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg != "--bench" {
            out.given.push(arg.clone());
        }
        let mut value = || {
            let v = it.next();
            if let Some(v) = v {
                out.given.push(v.clone());
            }
            v
        };
        match arg.as_str() {
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            "--smoke" => out.smoke = true,
            "--runs" => {
                let n = value().and_then(|v| v.parse().ok()).filter(|n| *n > 0);
                runs = Some(n.ok_or("--runs takes a number of runs, 1 or more")?);
            }
            "--chunk" => {
                let n = value().and_then(|v| v.parse().ok()).filter(|n| *n > 0);
                out.chunk = n.ok_or("--chunk takes a number of transactions, 1 or more")?;
            }
            "--no-callgrind" => out.callgrind = false,
            "--callgrind-out" => out.callgrind_out = Some(path(value(), "--callgrind-out")?),
            "--pin" => {
                let how = value().map_or("", String::as_str);
                out.pin = Pin::parse(how).ok_or("--pin takes one or none")?;
            }
            "--only" => {
                let list = value().ok_or("--only needs a list")?;
                for name in list.split(',') {
                    match (Backend::parse(name), Part::parse(name)) {
                        (Some(b), _) if !out.only.contains(&b) => out.only.push(b),
                        (_, Some(p)) if !out.parts.contains(&p) => out.parts.push(p),
                        (None, None) => {
                            return Err(format!(
                                "--only: unknown name {name} (backends: sqlite, mariadb, \
                                 postgres; parts: compare, resolve, replicas)"
                            ))
                        }
                        _ => {}
                    }
                }
            }
            "--chart" => out.chart = Some(path(value(), "--chart")?),
            "--markdown" => out.markdown = Some(path(value(), "--markdown")?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    out.runs = runs.unwrap_or(if out.smoke { 1 } else { RUNS });
    // In table order, whatever the order given.
    let backends = if out.only.is_empty() {
        &Backend::ALL[..]
    } else {
        &out.only
    };
    let parts = if out.parts.is_empty() {
        &Part::ALL[..]
    } else {
        &out.parts
    };
    let runnable = |p: &Part| backends.iter().any(|b| p.runs_on(*b));
    if !parts.iter().any(runnable) {
        return Err("--only: resolve and replicas run on mariadb and postgres only".into());
    }
    out.only = Backend::ALL
        .into_iter()
        .filter(|b| backends.contains(b))
        .collect();
    out.parts = Part::ALL
        .into_iter()
        .filter(|p| parts.contains(p))
        .collect();
    Ok(out)
}
