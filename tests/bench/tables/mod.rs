//! The report's tables, one module each: a `section(&Context) ->
//! Option<String>` (a heading, a sentence on what it shows, the table),
//! listed in [`crate::report::document`].

use crate::aggregate::Spread;

pub mod idle;
pub mod instructions;
pub mod latency;
pub mod ratios;
pub mod recovery;
pub mod replicas;
pub mod resolve;
pub mod throughput;

/// A Markdown table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
    let mut t = line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
    t += &line(&vec!["---".to_string(); header.len()]);
    rows.iter().for_each(|r| t += &line(r));
    t
}

/// One line of text, `|`-free and at most `max` characters, in backticks.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "/");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("`{}…`", &flat[..i]),
        None => format!("`{flat}`"),
    }
}

/// µs with one decimal below 1000, none above.
pub fn us(v: f64) -> String {
    if v < 1000.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A latency cell: the median of the runs' medians (their range) / the
/// median of the runs' p99, in µs.
pub fn latency(median: Option<Spread>, p99: Option<Spread>) -> String {
    match (median, p99) {
        (Some(m), Some(p)) => format!(
            "{} ({}–{}) / {}",
            us(m.median),
            us(m.min),
            us(m.max),
            us(p.median)
        ),
        _ => String::new(),
    }
}
