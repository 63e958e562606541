//! The report: Markdown sections, printed, and spliced into BENCHMARKS.md by
//! `--markdown` ([`crate::markdown`]). Each section is a function of the
//! [`Context`]; a table is a module of [`crate::tables`] with a `section`
//! function listed in [`document`].

use crate::aggregate::Runs;
use crate::begin_probe::Begins;
use crate::contenders::Txn;
use crate::load::Load;
use crate::workloads::Config;
use crate::{goals, idle, tables};

/// Everything the sections draw on.
pub struct Context<'a> {
    pub runs: Runs<'a>,
    pub begins: &'a Begins,
    pub load: &'a Load,
    pub run: &'a About,
}

/// How the figures were made.
pub struct About {
    /// The command, as a user types it.
    pub command: String,
    pub runs_asked: usize,
    pub cfg: Config,
    pub smoke: bool,
    /// `git describe` of the worktree, and whether it had uncommitted changes.
    pub commit: String,
    pub seconds: f64,
    pub machine: String,
}

/// Every section, in order.
pub fn document(ctx: &Context) -> String {
    let sections: [fn(&Context) -> Option<String>; 11] = [
        about,
        machine,
        tables::ratios::section,
        tables::latency::section,
        tables::throughput::section,
        tables::idle::section,
        tables::recovery::section,
        tables::instructions::section,
        goals::section,
        tables::resolve::section,
        tables::replicas::section,
    ];
    let parts: Vec<String> = sections.iter().filter_map(|s| s(ctx)).collect();
    parts.join("\n")
}

fn about(ctx: &Context) -> Option<String> {
    let a = ctx.run;
    let c = &a.cfg;
    let smoke = if a.smoke {
        "\n**Smoke run: a few transactions of everything, no timing meaning.**\n"
    } else {
        ""
    };
    let padded = if crate::pad::enabled() {
        format!(
            "\n**Calibration run ({}): the hand-written contenders also ran 80 small functions \
             per transaction that `#[db_txn]` does not; every ratio below is against these \
             padded floors.**\n",
            crate::pad::ENV
        )
    } else {
        String::new()
    };
    let begins = match (ctx.begins.get(Txn::PointRead), ctx.begins.get(Txn::Rmw)) {
        (Some(pr), Some(rmw)) => format!(
            "\n`#[db_txn]` on SQLite began the point-read with `{pr}` and the \
             read-modify-write with `{rmw}` (seen by diesel's instrumentation in a probe \
             process): the matching SQLite baselines are the raw contenders with the same \
             BEGIN.\n"
        ),
        _ => String::new(),
    };
    Some(format!(
        "### The run\n{smoke}{padded}\n`{}`: {} of {} runs finished in {:.0} s, at {}. Each run is a \
         process of its own with its own throwaway servers; within a run the contenders take \
         turns ({turns}). Per run and contender: \
         {} recorded transactions per single-threaded workload after {} of warm-up; \
         contention: {} rounds of {} threads × {} read-modify-writes after {} round(s) of \
         warm-up; idle gaps: {} point-reads, one every {} ms.\n{begins}",
        a.command,
        ctx.runs.count(),
        a.runs_asked,
        a.seconds,
        a.commit,
        c.rounds * c.chunk,
        c.warmup * c.chunk,
        c.contention_rounds,
        c.threads,
        c.per_thread,
        c.contention_warmup,
        c.idle_calls,
        idle::GAP.as_millis(),
        turns = match c.chunk {
            1 => "every transaction in the single-threaded workloads".to_string(),
            n => format!("every {n} transactions in the single-threaded workloads: `--chunk {n}`"),
        },
    ))
}

fn machine(ctx: &Context) -> Option<String> {
    Some(format!(
        "### The machine and its load\n\n{}{}",
        ctx.run.machine,
        ctx.load.section()
    ))
}
