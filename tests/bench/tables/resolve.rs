//! What `resolve_commit` costs ([`crate::resolve`]): off and on per server
//! and transaction, and PostgreSQL's transaction id against a marker row.

use super::{latency, table};
use crate::aggregate::Spread;
use crate::contenders::Txn;
use crate::counted::Counted;
use crate::report::Context;
use crate::results::Timing;

/// The median over the runs of one figure, with `digits` decimals; "–"
/// where no run has it.
fn median(values: impl Iterator<Item = Option<f64>>, digits: usize) -> String {
    Spread::of(values.flatten()).map_or("–".into(), |s| format!("{:.digits$}", s.median))
}

/// `counted` figures of each variant, "a / b".
fn counted(rows: &[&[Counted]], f: fn(&Counted) -> Option<f64>, digits: usize) -> String {
    let variants = rows.first().map_or(0, |r| r.len());
    (0..variants)
        .map(|i| median(rows.iter().map(|r| f(&r[i])), digits))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// The latency cell of variant `i` over the runs' timings.
fn timing(rows: &[&[Timing]], i: usize) -> String {
    latency(
        Spread::of(rows.iter().map(|t| t[i].median_us)),
        Spread::of(rows.iter().map(|t| t[i].p99_us)),
    )
}

/// Variant `a` ÷ variant `b` in each run: the median ratio over the runs
/// (bold) and its range, and the median of the p99 ratios.
fn ratio(rows: &[&[Timing]], a: usize, b: usize) -> [String; 3] {
    let of = |f: fn(&Timing) -> f64| Spread::of(rows.iter().map(|t| f(&t[a]) / f(&t[b])));
    match (of(|t| t.median_us), of(|t| t.p99_us)) {
        (Some(m), Some(p)) => [
            format!("**{:.3}**", m.median),
            m.range(3),
            format!("{:.3}", p.median),
        ],
        _ => Default::default(),
    }
}

pub fn section(ctx: &Context) -> Option<String> {
    let groups = ctx.runs.resolve();
    if groups.is_empty() {
        return None;
    }
    let n = ctx.runs.count();
    let cfg = &ctx.run.cfg;
    let mut rows = Vec::new();
    for group in &groups {
        let timings: Vec<&[Timing]> = group.iter().map(|r| &r.timing[..]).collect();
        let counts: Vec<&[Counted]> = group.iter().map(|r| &r.counted[..]).collect();
        let [r, range, p99] = ratio(&timings, 1, 0);
        rows.push(vec![
            group[0].backend.label().into(),
            match group[0].txn {
                Txn::PointRead => "point-read",
                Txn::Rmw => "read-modify-write",
            }
            .into(),
            timing(&timings, 0),
            timing(&timings, 1),
            r,
            range,
            p99,
            counted(&counts, |c| Some(c.round_trips), 2),
            counted(&counts, |c| c.rows, 2),
            counted(&counts, |c| Some(c.log_bytes), 0),
        ]);
    }
    let mut out = format!(
        "### What `resolve_commit` costs\n\n\
         `#[db_txn(pool = pool)]` on two pools of the run's server that differ only in \
         `PoolBuilder::resolve_commit`, each on a database of its own, taking turns after every \
         transaction on the same rows ({} recorded per pool and run after {}); then each pool \
         alone for {} transactions, counted. µs: the median of the runs' medians (range) / the \
         median of their p99; on ÷ off: the ratio of the two medians in each run, its median \
         over the {n} runs and range. Per transaction, medians over the runs: round trips (data \
         segments the client sent to the server), rows written (MariaDB `Handler_write` + \
         `Handler_update` + `Handler_delete`), log bytes (MariaDB redo, PostgreSQL WAL).\n\n{}",
        cfg.rounds,
        cfg.warmup,
        cfg.counted,
        table(
            &[
                "backend",
                "workload",
                "off: µs",
                "on: µs",
                &format!("on ÷ off, median of {n} runs"),
                "run-to-run range",
                "p99 on ÷ off",
                "round trips off / on",
                "rows written off / on",
                "log bytes off / on",
            ],
            &rows
        )
    );
    out += &schemes(ctx);
    Some(out)
}

/// PostgreSQL's read-modify-write in raw SQL, three ways.
fn schemes(ctx: &Context) -> String {
    let runs = ctx.runs.schemes();
    if runs.is_empty() {
        return String::new();
    }
    let timings: Vec<&[Timing]> = runs.iter().map(|r| &r.timing[..]).collect();
    let names = [
        "BEGIN .. COMMIT",
        "+ transaction id read before COMMIT (`db_txn`'s scheme)",
        "+ marker row inserted in the BEGIN batch (the alternative)",
    ];
    let rows: Vec<Vec<String>> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let [r, range, _] = ratio(&timings, i, 0);
            vec![
                name.to_string(),
                timing(&timings, i),
                r,
                range,
                median(runs.iter().map(|s| Some(s.counted[i].round_trips)), 2),
                median(runs.iter().map(|s| Some(s.counted[i].log_bytes)), 0),
            ]
        })
        .collect();
    format!(
        "\nPostgreSQL, transaction id or marker row: the same read-modify-write in raw SQL \
         (diesel's query builder between a hand-written BEGIN and COMMIT), three ways, each on \
         a connection of its own, taking turns; figures as above.\n\n{}",
        table(
            &[
                "PostgreSQL read-modify-write, raw SQL",
                "µs",
                &format!("÷ plain, median of {} runs", runs.len()),
                "run-to-run range",
                "round trips",
                "WAL bytes",
            ],
            &rows
        )
    )
}
