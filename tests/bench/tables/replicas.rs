//! Read replicas ([`crate::replicas`]): a pool without replicas against one
//! with a replica, per server and workload, and where the reads ran.

use super::{latency, table};
use crate::aggregate::Spread;
use crate::replicas::RYW_TIMEOUT;
use crate::report::Context;
use crate::results::ReplicaRow;

pub fn section(ctx: &Context) -> Option<String> {
    let groups = ctx.runs.replicas();
    if groups.is_empty() {
        return None;
    }
    let n = ctx.runs.count();
    let cfg = &ctx.run.cfg;
    let bound = RYW_TIMEOUT;
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|group| {
            let of = |f: fn(&ReplicaRow) -> f64| Spread::of(group.iter().map(|r| f(r)));
            let cell = |i: usize| {
                let m = Spread::of(group.iter().map(|r| r.timing[i].median_us));
                let p = Spread::of(group.iter().map(|r| r.timing[i].p99_us));
                latency(m, p)
            };
            let ratio = of(|r| r.timing[1].median_us / r.timing[0].median_us);
            let p99 = of(|r| r.timing[1].p99_us / r.timing[0].p99_us);
            let sum = |f: fn(&ReplicaRow) -> u64| group.iter().map(|r| f(r)).sum::<u64>();
            vec![
                group[0].backend.label().into(),
                group[0].workload.label().into(),
                cell(0),
                cell(1),
                ratio.map_or("".into(), |r| format!("**{:.3}**", r.median)),
                ratio.map_or("".into(), |r| r.range(3)),
                p99.map_or("".into(), |r| format!("{:.3}", r.median)),
                format!(
                    "{} / {}",
                    sum(|r| r.routed.replica_reads),
                    sum(|r| r.routed.primary_fallbacks)
                ),
                sum(|r| r.routed.replica_waits).to_string(),
                sum(|r| r.over_bound).to_string(),
            ]
        })
        .collect();
    Some(format!(
        "### Read replicas\n\n\
         A primary and one replica started for this in each run (MariaDB: a GTID replica; \
         PostgreSQL: a streaming standby); `#[db_txn(pool = pool)]` on a pool without replicas \
         and on one with `PoolBuilder::replica`, each on a database of its own, taking turns \
         after every call on the same rows ({} recorded per pool and run after {}). \
         Point-read: `read_only`, on a thread that never writes to the pool. Write, then read \
         it: a read-modify-write, then a `read_only` read of the same row on the same thread \
         (read-your-writes), timed together. µs: the median of the runs' medians (range) / the \
         median of their p99; with ÷ without: the ratio of the two medians in each run, its \
         median over the {n} runs and range. Reads of the pool with a replica, summed over the \
         runs (`PoolStats`): on the replica / on the primary, and how many waited for the \
         replica to show the thread's write (at most {} ms, `read_your_writes_timeout`; then \
         the read runs on the primary, and so do the reads of the next second that need the \
         replica to wait); calls ≥ {} ms: recorded calls on the pool with a replica that took \
         that long, an upper bound on the waits that ran out. A read that does not return \
         the value just written fails the run.\n\n{}",
        cfg.rounds,
        cfg.warmup,
        bound.as_millis(),
        bound.as_millis(),
        table(
            &[
                "backend",
                "workload",
                "without replicas: µs",
                "with a replica: µs",
                &format!("with ÷ without, median of {n} runs"),
                "run-to-run range",
                "p99 with ÷ without",
                "reads on the replica / on the primary",
                "waits for the replica",
                &format!("calls ≥ {} ms", bound.as_millis()),
            ],
            &rows
        )
    ))
}
