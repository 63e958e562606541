//! The main table: `#[db_txn]`'s median latency divided by each baseline's
//! (and that of `#[db_txn(pool = pool)]`),
//! per backend and workload, as the median over the runs with the run-to-run
//! range.

use super::{table, us};
use crate::contenders::{pairs, Contender};
use crate::goals::latency_goal;
use crate::report::Context;

pub fn section(ctx: &Context) -> Option<String> {
    let mut rows = Vec::new();
    for (b, w) in ctx.runs.keys() {
        for (ours, base) in pairs(&ctx.runs.contenders(b, w)) {
            let median = |who: Contender| {
                ctx.runs
                    .value(b, w, who, |m| m.median_us)
                    .map_or("".into(), |s| us(s.median))
            };
            let Some(r) = ctx.runs.ratio(b, w, ours, base, |m| m.median_us) else {
                continue;
            };
            let p99 = ctx.runs.ratio(b, w, ours, base, |m| m.p99_us);
            // Goals are judged on `#[db_txn]` as the README uses it.
            let goal = match ours {
                Contender::DbTxn => latency_goal(ctx, b, w, base),
                _ => None,
            };
            rows.push(vec![
                b.label().into(),
                w.label().into(),
                ours.label().into(),
                base.label().into(),
                median(base),
                median(ours),
                format!("**{:.3}**", r.median),
                r.range(3),
                p99.map_or("".into(), |s| format!("{:.3}", s.median)),
                goal.map_or("".into(), |g| format!("≤ {g}")),
            ]);
        }
    }
    if rows.is_empty() {
        return None;
    }
    let n = ctx.runs.count();
    Some(format!(
        "### `#[db_txn]` ÷ each baseline, per transaction\n\n\
         In each run, the median latency of `#[db_txn]` (default settings, on the installed \
         pool: the README's way) or of `#[db_txn(pool = pool)]` (the same call without the \
         default pool's lookup; steady workloads, idle gaps and recovery only) divided by \
         the baseline's; the median of these ratios over the {n} runs, and their run-to-run \
         range (min–max). µs: medians of the runs' medians. The goal column marks the \
         baseline each goal is judged against (see Goals): the one that sends the same SQL \
         as `#[db_txn]`, without and (on the servers) with r2d2's ping; goals are judged on \
         `#[db_txn]` alone.\n\n{}",
        table(
            &[
                "backend",
                "workload",
                "measured",
                "baseline",
                "baseline µs",
                "measured µs",
                &format!("ratio, median of {n} runs"),
                "run-to-run range",
                "p99 ratio (median)",
                "goal",
            ],
            &rows
        )
    ))
}
