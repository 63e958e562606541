//! Figures over the runs: a figure is taken in each run (a median, a ratio
//! of two contenders' medians in the same run), then summarized by its
//! median over the runs and its run-to-run range.

use std::fmt;

use crate::contenders::{Backend, Contender};
use crate::results::{
    Counts, Measured, RecoveryRow, ReplicaRow, ResolveRow, Row, RunResult, SchemesRow,
};
use crate::workloads::Workload;

/// Median, minimum and maximum of one figure over the runs.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => return None,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// The range as `min–max` with `digits` decimals.
    pub fn range(&self, digits: usize) -> String {
        format!("{:.digits$}–{:.digits$}", self.min, self.max)
    }

    /// `median (min–max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!("{:.digits$} ({})", self.median, self.range(digits))
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.show(3))
    }
}

/// The results of all runs that finished.
pub struct Runs<'a>(pub &'a [RunResult]);

impl Runs<'_> {
    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Every (backend, workload) measured, in the order of the runs.
    pub fn keys(&self) -> Vec<(Backend, Workload)> {
        let mut out = Vec::new();
        for row in self.0.iter().flat_map(|r| &r.rows) {
            if !out.contains(&(row.backend, row.workload)) {
                out.push((row.backend, row.workload));
            }
        }
        out
    }

    pub fn backends(&self) -> Vec<Backend> {
        let mut out = Vec::new();
        for (b, _) in self.keys() {
            if !out.contains(&b) {
                out.push(b);
            }
        }
        out
    }

    /// The row of `backend` and `workload` in each run that has it.
    pub fn rows(&self, backend: Backend, workload: Workload) -> impl Iterator<Item = &Row> {
        self.0.iter().flat_map(move |r| {
            r.rows
                .iter()
                .filter(move |row| row.backend == backend && row.workload == workload)
        })
    }

    /// The contenders of `backend` and `workload`, in table order.
    pub fn contenders(&self, backend: Backend, workload: Workload) -> Vec<Contender> {
        self.rows(backend, workload)
            .next()
            .map_or_else(Vec::new, |r| {
                r.measured.iter().map(|m| m.contender).collect()
            })
    }

    /// `f` of `who` over the runs.
    pub fn value(
        &self,
        backend: Backend,
        workload: Workload,
        who: Contender,
        f: fn(&Measured) -> f64,
    ) -> Option<Spread> {
        Spread::of(
            self.rows(backend, workload)
                .filter_map(|r| r.get(who).map(f)),
        )
    }

    /// `f(a) / f(b)` of each run, over the runs.
    pub fn ratio(
        &self,
        backend: Backend,
        workload: Workload,
        a: Contender,
        b: Contender,
        f: fn(&Measured) -> f64,
    ) -> Option<Spread> {
        Spread::of(
            self.rows(backend, workload)
                .filter_map(|r| Some(f(r.get(a)?) / f(r.get(b)?))),
        )
    }

    /// `#[db_txn]`'s pings and skipped pings during `workload`, summed over
    /// the runs, and the calls it made.
    pub fn pings(&self, backend: Backend, workload: Workload) -> (u64, u64, u64) {
        self.rows(backend, workload).fold((0, 0, 0), |acc, r| {
            let calls = r.get(Contender::DbTxn).map_or(0, |m| m.calls);
            (acc.0 + r.pings.0, acc.1 + r.pings.1, acc.2 + calls)
        })
    }

    /// The recovery runs of `backend`.
    pub fn recoveries(&self, backend: Backend) -> Vec<&RecoveryRow> {
        self.0
            .iter()
            .flat_map(|r| &r.recoveries)
            .filter(|r| r.backend == backend)
            .collect()
    }

    /// Every instruction count (one run counts).
    pub fn counts(&self) -> Vec<&Counts> {
        self.0.iter().flat_map(|r| &r.counts).collect()
    }

    /// The `resolve_commit` rows of every run, grouped by (backend,
    /// transaction) in the order of the runs.
    pub fn resolve(&self) -> Vec<Vec<&ResolveRow>> {
        group(self.0.iter().flat_map(|r| &r.resolve), |r| {
            (r.backend, r.txn)
        })
    }

    /// The PostgreSQL schemes of every run that has them.
    pub fn schemes(&self) -> Vec<&SchemesRow> {
        self.0.iter().filter_map(|r| r.schemes.as_ref()).collect()
    }

    /// The read-replica rows of every run, grouped by (backend, workload).
    pub fn replicas(&self) -> Vec<Vec<&ReplicaRow>> {
        group(self.0.iter().flat_map(|r| &r.replicas), |r| {
            (r.backend, r.workload)
        })
    }
}

/// `rows` grouped by `key`, groups in the order of their first row.
fn group<'a, T, K: PartialEq>(
    rows: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> K,
) -> Vec<Vec<&'a T>> {
    let mut out: Vec<(K, Vec<&T>)> = Vec::new();
    for row in rows {
        let k = key(row);
        match out.iter_mut().find(|(g, _)| *g == k) {
            Some((_, group)) => group.push(row),
            None => out.push((k, vec![row])),
        }
    }
    out.into_iter().map(|(_, group)| group).collect()
}
