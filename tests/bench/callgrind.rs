//! Instructions per call of the macro's own overhead, counted by callgrind:
//! repeatable on a noisy machine where wall-clock differences of a few
//! hundred nanoseconds drown.
//!
//! The program runs itself once per backend and variant under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect=*callgrind_measured*`:
//! the child sets up a pool on an empty database, warms up, then makes `n`
//! transactions (point-reads or read-modify-writes) inside
//! [`callgrind_measured`], the only function
//! whose instructions are counted (the client's: a server's work happens in
//! its own process). Every variant runs the same SQL on the same kind of
//! database, so the differences are the transaction machinery.

use std::path::Path;
use std::process::Command;

use crate::contenders::{self, Txn};

/// The variants, and what each is.
pub const VARIANTS: [(&str, &str); 4] = [
    (
        "raw_noping",
        "hand-written: r2d2 `get()` without ping + diesel transaction",
    ),
    ("raw_ping", "hand-written with r2d2's checkout ping"),
    ("db_txn_explicit", "`#[db_txn(pool = pool)]`"),
    ("db_txn", "`#[db_txn]`, default settings (installed pool)"),
];

/// Calls made before counting starts.
const WARMUP: u64 = 200;

/// The counted region: `n` calls of `call`.
#[inline(never)]
pub fn callgrind_measured(n: u64, call: &mut dyn FnMut(u64)) {
    for i in 0..n {
        call(i);
    }
}

/// The name of `txn` on a child's command line and in file names.
pub fn txn_key(txn: Txn) -> &'static str {
    match txn {
        Txn::PointRead => "pr",
        Txn::Rmw => "rmw",
    }
}

/// The child: `n` counted transactions `txn` (see [`txn_key`]) by
/// `variant` on `backend`, in the empty database `url`. Panics on any
/// failed call.
pub fn child(backend: &str, variant: &str, txn: &str, n: u64, url: &str) {
    let txn = match txn {
        "rmw" => Txn::Rmw,
        _ => Txn::PointRead,
    };
    let mut call = match backend {
        "sqlite" => contenders::sqlite::calls(variant, txn, url),
        "mariadb" => contenders::mysql::calls(variant, txn, url),
        "postgres" => contenders::postgres::calls(variant, txn, url),
        other => panic!("unknown backend {other}"),
    };
    (0..WARMUP).for_each(&mut call);
    callgrind_measured(n, &mut call);
}

fn child_args(backend: &str, variant: &str, txn: Txn, n: u64, url: &str) -> Vec<String> {
    let n = n.to_string();
    ["--callgrind-child", backend, variant, txn_key(txn), &n, url]
        .map(str::to_owned)
        .into()
}

/// Whether `valgrind` can be run.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Instructions per transaction `txn` of each variant on `backend`, counted
/// by callgrind; `database(name)` gives an empty database of that name.
/// The callgrind files go to `keep` if given, else to a temporary directory.
/// `Err` if valgrind is missing or a child failed.
pub fn measure(
    backend: &str,
    txn: Txn,
    database: &dyn Fn(&str) -> String,
    n: u64,
    keep: Option<&Path>,
) -> Result<Vec<(&'static str, f64)>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let temp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = keep.unwrap_or(temp.path());
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    VARIANTS
        .iter()
        .map(|(variant, _)| {
            let name = format!("{}_{variant}", txn_key(txn));
            let file = dir.join(format!("{backend}-{name}.callgrind"));
            let run = Command::new("valgrind")
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={}", file.display()))
                .args([
                    "--collect-atstart=no",
                    "--toggle-collect=*callgrind_measured*",
                ])
                .arg(&exe)
                .args(child_args(backend, variant, txn, n, &database(&name)))
                .output()
                .map_err(|e| format!("cannot run valgrind (apt-get install valgrind): {e}"))?;
            if !run.status.success() {
                return Err(format!(
                    "valgrind {backend} {variant}: {}\n{}",
                    run.status,
                    String::from_utf8_lossy(&run.stderr)
                ));
            }
            Ok((*variant, total_instructions(&file)? as f64 / n as f64))
        })
        .collect()
}

/// The `totals:` (or `summary:`) line of a callgrind output file.
fn total_instructions(file: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("{}: no totals line", file.display()))
}

/// The smoke run's check of the children, without valgrind: each variant
/// makes `n` calls of each transaction in a child process, which must exit
/// cleanly.
pub fn smoke(backend: &str, database: &dyn Fn(&str) -> String, n: u64) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    for (txn, (variant, _)) in [Txn::PointRead, Txn::Rmw]
        .into_iter()
        .flat_map(|t| VARIANTS.map(|v| (t, v)))
    {
        let name = format!("{}_{variant}", txn_key(txn));
        let status = Command::new(&exe)
            .args(child_args(backend, variant, txn, n, &database(&name)))
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("callgrind child {backend} {variant}: {status}"));
        }
    }
    Ok(())
}
