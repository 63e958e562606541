//! µs per transaction of every contender: one table per backend, a column
//! per contender, a line per workload.

use super::{latency, table};
use crate::report::Context;

pub fn section(ctx: &Context) -> Option<String> {
    let mut out = String::new();
    for b in ctx.runs.backends() {
        let keys: Vec<_> = ctx.runs.keys().into_iter().filter(|k| k.0 == b).collect();
        let Some(&(_, first)) = keys.first() else {
            continue;
        };
        let contenders = ctx.runs.contenders(b, first);
        let mut header = vec!["workload".to_string()];
        header.extend(contenders.iter().map(|c| c.label().to_string()));
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|&(_, w)| {
                let mut row = vec![w.label().to_string()];
                for who in &contenders {
                    let median = ctx.runs.value(b, w, *who, |m| m.median_us);
                    let p99 = ctx.runs.value(b, w, *who, |m| m.p99_us);
                    row.push(latency(median, p99));
                }
                row
            })
            .collect();
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        out += &format!("{}:\n\n{}\n", b.label(), table(&header, &rows));
    }
    if out.is_empty() {
        return None;
    }
    Some(
        format!(
            "### µs per transaction\n\n\
         Each cell: median µs (the median of the runs' medians, and their range) / p99 µs \
         (median of the runs' p99).\n\n{}",
            out.trim_end()
        ) + "\n",
    )
}
