//! The command line of the parent process (see the crate docs in
//! `compare.rs` and BENCHMARKS.md).

use std::path::{Path, PathBuf};

use crate::contenders::Backend;
use crate::pin::Pin;

/// Runs of the comparison by default: enough for a median and a range that
/// mean something, within a few minutes on a two-core machine.
pub const RUNS: usize = 5;

#[derive(Debug)]
pub struct Args {
    pub smoke: bool,
    pub runs: usize,
    pub pin: Pin,
    pub callgrind: bool,
    pub callgrind_out: Option<PathBuf>,
    pub only: Vec<Backend>,
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
        pin: Pin::One,
        callgrind: true,
        callgrind_out: None,
        only: Backend::ALL.to_vec(),
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
            "--no-callgrind" => out.callgrind = false,
            "--callgrind-out" => out.callgrind_out = Some(path(value(), "--callgrind-out")?),
            "--pin" => {
                let how = value().map_or("", String::as_str);
                out.pin = Pin::parse(how).ok_or("--pin takes one or none")?;
            }
            "--only" => {
                let list = value().ok_or("--only needs a list")?;
                out.only = list
                    .split(',')
                    .map(|b| {
                        Backend::parse(b).ok_or(format!(
                            "--only: unknown backend {b} (sqlite, mariadb, postgres)"
                        ))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--chart" => out.chart = Some(path(value(), "--chart")?),
            "--markdown" => out.markdown = Some(path(value(), "--markdown")?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    out.runs = runs.unwrap_or(if out.smoke { 1 } else { RUNS });
    Ok(out)
}
