//! `db_txn_faultproxy`: the test kit's fault-injecting TCP proxy as a
//! process of its own, as a proxy, NAT or load balancer is in a real
//! deployment (the server sees the proxy's address, not the client's).
//!
//! ```text
//! db_txn_faultproxy --upstream 127.0.0.1:5432 [--listen 127.0.0.1:0]
//! ```
//!
//! It prints its greeting (with the address it listens on) on standard
//! output, then reads commands from standard input, one per line, and
//! answers each once it is in force (see `control.rs`). It exits when its
//! standard input closes, so it ends with the process that started it; the
//! kit's `ProxyProcess` also has the kernel kill it then.

// The kit's half of the control protocol is unused here.
#[allow(dead_code)]
mod control;
mod engine;
mod wire;

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;

use control::Command;
use engine::Engine;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", control::PROGRAM);
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let (listen, upstream) = parse_args(std::env::args().skip(1))?;
    let engine = Engine::start(listen, upstream).map_err(|e| format!("listen on {listen}: {e}"))?;
    let mut out = io::stdout().lock();
    let greet = control::greeting(engine.addr());
    eprintln!("{greet}, upstream {upstream}");
    writeln!(out, "{greet}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))?;
    for line in io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let reply = match Command::parse(&line) {
            Ok(command) => format!("ok {}", apply(&engine, command)),
            Err(e) => format!("err {e}"),
        };
        eprintln!("{line} -> {reply}");
        writeln!(out, "{reply}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    // Standard input closed: whoever controlled the proxy is gone.
    Ok(())
}

/// Applies `command`; the reply's value.
fn apply(engine: &Engine, command: Command) -> String {
    match command {
        Command::Cut(how) => engine.cut_all(how).to_string(),
        Command::BlackholeExisting => engine.blackhole_existing().to_string(),
        Command::BlackholeAll => {
            engine.set_blackhole_all(true);
            "1".into()
        }
        Command::Lift => {
            engine.set_blackhole_all(false);
            "1".into()
        }
        Command::Arm(fault) => {
            engine.arm(fault);
            "1".into()
        }
        Command::Pending => u8::from(engine.commit_fault_pending()).to_string(),
        Command::Retarget(addr) => {
            engine.retarget(addr);
            "1".into()
        }
        Command::Stats => control::format_stats(&engine.stats()),
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<(SocketAddr, SocketAddr), String> {
    let usage = || {
        format!(
            "usage: {} --upstream HOST:PORT [--listen HOST:PORT]",
            control::PROGRAM
        )
    };
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut upstream = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(usage)?;
        let addr: SocketAddr = value
            .parse()
            .map_err(|e| format!("{flag} {value:?}: {e}\n{}", usage()))?;
        match flag.as_str() {
            "--listen" => listen = addr,
            "--upstream" => upstream = Some(addr),
            _ => return Err(usage()),
        }
    }
    Ok((listen, upstream.ok_or_else(usage)?))
}
