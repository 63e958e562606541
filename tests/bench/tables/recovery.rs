//! The recovery runs: a server restart in the middle of a steady run,
//! summed (counts) or summarized (times) over the runs.

use std::time::Duration;

use super::{one_line, table};
use crate::aggregate::Spread;
use crate::recovery::Recovery;
use crate::report::Context;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn section(ctx: &Context) -> Option<String> {
    let mut rows = Vec::new();
    for b in ctx.runs.backends() {
        let recs = ctx.runs.recoveries(b);
        let Some(first) = recs.first() else {
            continue;
        };
        let down = Spread::of(recs.iter().map(|r| ms(r.restart.downtime)));
        let reconnect = Spread::of(recs.iter().map(|r| ms(r.restart.reconnect)));
        let kit_lag = Spread::of(recs.iter().map(|r| ms(r.restart.kit_lag)));
        let first_connect = Spread::of(recs.iter().map(|r| ms(r.restart.first_connect)));
        let median = |s: Option<Spread>| s.map_or("?".into(), |s| format!("{:.1}", s.median));
        let backend = format!(
            "{} ({} restarts; down {} ms, first connect {} ms, later {} ms, kit {} ms late)",
            b.label(),
            recs.len(),
            median(down),
            median(first_connect),
            median(reconnect),
            median(kit_lag),
        );
        for (i, (who, _)) in first.results.iter().enumerate() {
            let all: Vec<&Recovery> = recs
                .iter()
                .filter_map(|r| r.results.get(i).map(|x| &x.1))
                .collect();
            let sum = |f: fn(&Recovery) -> u64| all.iter().map(|r| f(r)).sum::<u64>();
            let never = all.iter().filter(|r| r.first_ok_after_up.is_none()).count();
            let first_ok = Spread::of(all.iter().filter_map(|r| r.first_ok_after_up).map(ms));
            let first_ok = match (first_ok, never) {
                (Some(s), 0) => s.show(1),
                (Some(s), n) => format!("{}; never in {n}", s.show(1)),
                (None, _) => "never".into(),
            };
            let longest = all.iter().map(|r| r.longest_call).max().unwrap_or_default();
            let error = |f: fn(&Recovery) -> &Option<String>| {
                all.iter()
                    .find_map(|r| f(r).as_deref())
                    .map_or(String::new(), |e| one_line(e, 60))
            };
            rows.push(vec![
                backend.clone(),
                who.label().into(),
                sum(|r| r.calls).to_string(),
                format!("{} ({})", sum(|r| r.errors), sum(|r| r.errors_after_up)),
                sum(|r| r.commit_unknown).to_string(),
                first_ok,
                format!("{:.1}", ms(longest)),
                error(|r| &r.first_error),
                error(|r| &r.first_error_after_up),
            ]);
        }
    }
    if rows.is_empty() {
        return None;
    }
    Some(format!(
        "### Recovery from a server restart\n\n\
         One restart per run; calls and errors summed over the runs (in parentheses: errors of \
         calls started after the server was up again), times in ms: first success after up as \
         the median over the runs (range), longest call the longest of all. Up: the start of \
         the first connect that succeeded, of a watcher connecting every {watch} ms from the \
         stop on (the kit's readiness probe, which asks every 10 ms, saw it later by the \
         median given). First connect: that connect's time (a server just started is \
         slower to answer its first connections); later: a connect after the run (median of 5). \
         First success after up: how long a caller waited for its first \
         success once the server was up, from up, or from the start of that call if it \
         started after up and none of the caller's calls failed after up (a caller between \
         two calls is not waiting).\n\n{}",
        table(
            &[
                "backend",
                "contender",
                "calls",
                "errors seen by callers (after up)",
                "of which commit unknown",
                "first success after up, ms",
                "longest call, ms",
                "first error",
                "first error after up",
            ],
            &rows
        ),
        watch = ms(crate::recovery::WATCH),
    ))
}
