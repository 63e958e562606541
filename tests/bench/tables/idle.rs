//! The idle-gap workload in detail: per-call latency after a gap longer than
//! the ping window, and who pinged.

use super::{table, us};
use crate::contenders::{Contender, Ping};
use crate::idle::GAP;
use crate::report::Context;
use crate::workloads::Workload;

pub fn section(ctx: &Context) -> Option<String> {
    let w = Workload::Idle;
    let mut rows = Vec::new();
    let mut steady_pings = Vec::new();
    for b in ctx.runs.backends() {
        for who in ctx.runs.contenders(b, w) {
            let Some(lat) = ctx.runs.value(b, w, who, |m| m.median_us) else {
                continue;
            };
            let calls: u64 = ctx
                .runs
                .rows(b, w)
                .filter_map(|r| r.get(who))
                .map(|m| m.calls)
                .sum();
            let pinged = match who {
                Contender::Raw(_, Ping::Yes) => "every checkout (r2d2)".to_string(),
                Contender::Raw(_, Ping::No) => "never".to_string(),
                Contender::DbTxn => {
                    let (pings, skipped, calls) = ctx.runs.pings(b, w);
                    format!("{pings} pings, {skipped} skipped, in {calls} calls (pool stats)")
                }
                Contender::DbTxnExplicit => "as `#[db_txn]` (its own pool, not counted)".into(),
            };
            let p99 = ctx.runs.value(b, w, who, |m| m.p99_us);
            rows.push(vec![
                b.label().into(),
                who.label().into(),
                calls.to_string(),
                format!("{} ({}–{})", us(lat.median), us(lat.min), us(lat.max)),
                p99.map_or("".into(), |p| us(p.max)),
                pinged,
            ]);
        }
        let (pings, _, calls) = [Workload::PointRead, Workload::Rmw, Workload::Contention]
            .iter()
            .map(|w| ctx.runs.pings(b, *w))
            .fold((0, 0, 0), |a, p| (a.0 + p.0, a.1 + p.1, a.2 + p.2));
        steady_pings.push(format!("{} {pings} in {calls} calls", b.label()));
    }
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "### Idle gaps\n\n\
         {}: every contender of every backend makes one point-read every {} ms (longer than \
         `#[db_txn]`'s default `ping_window`, 500 ms), so each call checks out a connection \
         idle for longer than the window. Latency: the median of the runs' medians (range); \
         slowest: the largest of the runs' p99 (with this few calls, about their slowest \
         call). Ratios to each baseline are in the first table. `#[db_txn]` pings during the \
         other workloads, for comparison: {}.\n\n{}",
        w.label(),
        GAP.as_millis(),
        steady_pings.join(", "),
        table(
            &[
                "backend",
                "contender",
                "calls",
                "median µs (range)",
                "slowest µs",
                "pinged"
            ],
            &rows
        )
    ))
}
