//! Transactions per second of the contention workload.

use super::table;
use crate::contenders::Contender;
use crate::report::Context;
use crate::workloads::Workload;

pub fn section(ctx: &Context) -> Option<String> {
    let w = Workload::Contention;
    let mut rows = Vec::new();
    for b in ctx.runs.backends() {
        for who in ctx.runs.contenders(b, w) {
            let Some(tput) = ctx.runs.value(b, w, who, |m| m.per_s) else {
                continue;
            };
            let ratio = match who {
                Contender::DbTxn | Contender::DbTxnExplicit => String::new(),
                base => ctx
                    .runs
                    .ratio(b, w, Contender::DbTxn, base, |m| m.per_s)
                    .map_or("".into(), |r| r.to_string()),
            };
            rows.push(vec![
                b.label().into(),
                who.label().into(),
                tput.show(0),
                ratio,
            ]);
        }
    }
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "### Contention throughput\n\n\
         {}: transactions per second of wall time; the median over the runs (range).\n\n{}",
        w.label(),
        table(
            &[
                "backend",
                "contender",
                "txn/s",
                "`#[db_txn]` ÷ this: median (range)"
            ],
            &rows
        )
    ))
}
