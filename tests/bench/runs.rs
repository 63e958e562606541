//! Each run of the comparison in a child process of its own (fresh
//! servers, connections, address space and allocator, as from one
//! invocation to the next): the parent writes the run's options as JSON, the
//! child ([`child`]) runs [`crate::run::run`] and writes its
//! [`RunResult`] as JSON.

use std::path::Path;
use std::process::Command;

use crate::results::RunResult;
use crate::run::{self, Opts};

/// The child: `--run-child OPTS.json RESULT.json`.
pub fn child(opts: &Path, result: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(opts).map_err(|e| format!("{}: {e}", opts.display()))?;
    let opts: Opts = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let out = run::run(&opts);
    let text = serde_json::to_string(&out).map_err(|e| e.to_string())?;
    std::fs::write(result, text).map_err(|e| format!("{}: {e}", result.display()))
}

/// Runs `opts` in a child, its files in `dir`; its progress goes to stderr.
pub fn spawn(opts: &Opts, dir: &Path) -> Result<RunResult, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let input = dir.join(format!("run{}-opts.json", opts.index));
    let output = dir.join(format!("run{}-result.json", opts.index));
    let text = serde_json::to_string(opts).map_err(|e| e.to_string())?;
    std::fs::write(&input, text).map_err(|e| format!("{}: {e}", input.display()))?;
    let status = Command::new(exe)
        .arg("--run-child")
        .arg(&input)
        .arg(&output)
        .status()
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!(
            "the run's process failed ({status}): see its output above"
        ));
    }
    let text =
        std::fs::read_to_string(&output).map_err(|e| format!("{}: {e}", output.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", output.display()))
}
