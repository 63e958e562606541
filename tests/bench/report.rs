//! Summaries and the Markdown tables the program prints (and BENCHMARKS.md
//! quotes): median and p99 µs per transaction, the ratios 3/1 and 3/2, the
//! recovery figures, the instruction counts, and the machine.

use std::fmt::Write as _;
use std::time::Duration;

use crate::contenders::{Contender, Txn};
use crate::recovery::{Recovery, Restart};
use crate::workloads::Samples;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    PointRead,
    Rmw,
    Contention,
}

impl Workload {
    pub const ALL: [Workload; 3] = [Workload::PointRead, Workload::Rmw, Workload::Contention];

    pub fn label(self) -> &'static str {
        match self {
            Workload::PointRead => "point-read",
            Workload::Rmw => "read-modify-write",
            Workload::Contention => "RMW, 16 threads / pool 4",
        }
    }
}

/// Instructions per call of each callgrind variant, for one backend and
/// transaction.
pub struct Counts {
    pub backend: &'static str,
    pub txn: Txn,
    pub per_call: Vec<(&'static str, f64)>,
}

/// One backend and workload, all three contenders.
pub struct Row {
    pub backend: &'static str,
    pub workload: Workload,
    pub samples: [Samples; 3],
}

/// The recovery run of one backend.
pub struct RecoveryRow {
    pub backend: &'static str,
    pub restart: Restart,
    pub results: [Recovery; 3],
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Median and p99 in µs, and transactions per second of wall time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub median_us: f64,
    pub p99_us: f64,
    pub per_s: f64,
}

impl Samples {
    pub fn summary(&self) -> Summary {
        let mut sorted = self.nanos.clone();
        sorted.sort_unstable();
        Summary {
            median_us: percentile(&sorted, 0.5) as f64 / 1e3,
            p99_us: percentile(&sorted, 0.99) as f64 / 1e3,
            per_s: sorted.len() as f64 / self.wall.as_secs_f64().max(1e-9),
        }
    }
}

/// The interquartile range of the ratios a/b of the block medians: how much
/// the ratio moves over the run.
fn ratio_spread(a: &Samples, b: &Samples) -> (f64, f64) {
    let mut r: Vec<f64> = a
        .block_medians()
        .iter()
        .zip(&b.block_medians())
        .map(|(x, y)| *x as f64 / (*y).max(1) as f64)
        .collect();
    r.sort_by(f64::total_cmp);
    let q = |p: f64| {
        r.get((p * (r.len().max(1) - 1) as f64).round() as usize)
            .copied()
    };
    (q(0.25).unwrap_or(0.0), q(0.75).unwrap_or(0.0))
}

impl Row {
    pub fn summaries(&self) -> [Summary; 3] {
        [0, 1, 2].map(|i| self.samples[i].summary())
    }

    /// (3/1, 3/2) of the medians.
    pub fn ratios(&self) -> (f64, f64) {
        let s = self.summaries();
        (
            s[2].median_us / s[0].median_us,
            s[2].median_us / s[1].median_us,
        )
    }
}

/// The main table: one line per backend and workload.
pub fn latency_table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| backend | workload | (1) raw, no ping: median / p99 µs | (2) raw + ping: median / p99 µs \
         | (3) #[db_txn]: median / p99 µs | 3/1 median (blocks IQR) | 3/2 median (blocks IQR) | 3/1 p99 | 3/2 p99 |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        let s = row.summaries();
        let (r31, r32) = row.ratios();
        let (a, b) = ratio_spread(&row.samples[2], &row.samples[0]);
        let (c, d) = ratio_spread(&row.samples[2], &row.samples[1]);
        let _ = writeln!(
            t,
            "| {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {r31:.3} ({a:.3}–{b:.3}) \
             | {r32:.3} ({c:.3}–{d:.3}) | {:.3} | {:.3} |",
            row.backend,
            row.workload.label(),
            s[0].median_us,
            s[0].p99_us,
            s[1].median_us,
            s[1].p99_us,
            s[2].median_us,
            s[2].p99_us,
            s[2].p99_us / s[0].p99_us,
            s[2].p99_us / s[1].p99_us,
        );
    }
    t
}

/// Throughput of the contention workload.
pub fn throughput_table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| backend | (1) txn/s | (2) txn/s | (3) txn/s | 3/1 | 3/2 |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows.iter().filter(|r| r.workload == Workload::Contention) {
        let s = row.summaries();
        let _ = writeln!(
            t,
            "| {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} |",
            row.backend,
            s[0].per_s,
            s[1].per_s,
            s[2].per_s,
            s[2].per_s / s[0].per_s,
            s[2].per_s / s[1].per_s
        );
    }
    t
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The recovery table: one line per backend and contender.
pub fn recovery_table(rows: &[RecoveryRow]) -> String {
    let mut t = String::from(
        "| backend | contender | calls | errors seen by callers (after up) | of which commit unknown \
         | first success after up | first call started after up | longest call | first error | first error after up |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for row in rows {
        for who in Contender::ALL {
            let r = &row.results[who.index()];
            let first_call = r.first_call_after_up.map_or("none".into(), |(d, ok)| {
                format!("{} ({})", ms(d), if ok { "ok" } else { "error" })
            });
            let _ =
                writeln!(
                t,
                "| {} (down {}, reconnect {}) | {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} |",
                row.backend,
                ms(row.restart.downtime),
                ms(row.restart.reconnect),
                who.label(),
                r.calls,
                r.errors,
                r.errors_after_up,
                r.commit_unknown,
                r.first_ok_after_up.map_or("none".into(), ms),
                first_call,
                ms(r.longest_call),
                r.first_error.as_deref().map_or("".into(), |e| one_line(e, 60)),
                r.first_error_after_up.as_deref().map_or("".into(), |e| one_line(e, 60)),
            );
        }
    }
    t
}

fn one_line(text: &str, max: usize) -> String {
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

/// Instructions per call of each variant (rows) on each backend (columns),
/// and the difference to the hand-written floor.
pub fn callgrind_table(counts: &[&Counts]) -> String {
    let mut t = String::from("| variant |");
    counts
        .iter()
        .for_each(|c| t += &format!(" {}: instructions / call (vs floor) |", c.backend));
    t += "\n| --- |";
    counts.iter().for_each(|_| t += " --- |");
    t += "\n";
    for (variant, what) in crate::callgrind::VARIANTS {
        t += &format!("| {what} |");
        for Counts {
            per_call: results, ..
        } in counts
        {
            let floor = results.first().map_or(0.0, |r| r.1);
            match results.iter().find(|r| r.0 == variant) {
                Some((_, ir)) => t += &format!(" {ir:.0} ({:+.0}) |", ir - floor),
                None => t += " |",
            }
        }
        t += "\n";
    }
    t
}

/// nproc, CPU model, memory, kernel, rustc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map_or("unknown".into(), |m| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kb: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let command = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into())
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "- nproc: {nproc}\n- CPU: {model}\n- memory: {:.1} GiB\n- kernel: {}\n- {}\n- load average at start: {}\n",
        mem_kb as f64 / 1024.0 / 1024.0,
        command("uname", "-r"),
        command("rustc", "-V"),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    )
}
