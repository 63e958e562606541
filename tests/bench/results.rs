//! What one run finds, as the run's child process hands it to the parent
//! (JSON, see [`crate::runs`]): per backend and workload a summary of each
//! contender's latencies, the recovery runs, the instruction counts, the
//! `resolve_commit` and read-replica tables' figures, and what went wrong.

use serde::{Deserialize, Serialize};

use crate::contenders::{Backend, Contender, Txn};
use crate::counted::Counted;
use crate::recovery::{Recovery, Restart};
use crate::replicas::Routed;
use crate::workloads::{Samples, Workload};

/// One contender in one workload of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measured {
    pub contender: Contender,
    pub median_us: f64,
    pub p99_us: f64,
    /// Transactions per second of wall time (meaningful for the contention
    /// workload).
    pub per_s: f64,
    pub calls: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// One backend and workload of one run, all its contenders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub backend: Backend,
    pub workload: Workload,
    pub measured: Vec<Measured>,
    /// Pings and skipped pings of the `#[db_txn]` pool during the workload.
    pub pings: (u64, u64),
}

impl Row {
    pub fn get(&self, who: Contender) -> Option<&Measured> {
        self.measured.iter().find(|m| m.contender == who)
    }
}

/// The recovery run of one backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecoveryRow {
    pub backend: Backend,
    pub restart: Restart,
    pub results: Vec<(Contender, Recovery)>,
}

/// Instructions per call of each callgrind variant, for one backend and
/// transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counts {
    pub backend: Backend,
    pub txn: Txn,
    /// (variant, instructions per call).
    pub per_call: Vec<(String, f64)>,
    /// (variant, instructions per call spent inside the allocator: malloc,
    /// calloc, realloc, free and what they call). Part of `per_call`.
    #[serde(default)]
    pub in_allocator: Vec<(String, f64)>,
    /// (variant, calls into the allocator per call).
    #[serde(default)]
    pub allocator_calls: Vec<(String, f64)>,
    /// (variant, distinct 64-byte lines of code run on every call).
    #[serde(default)]
    pub code_lines: Vec<(String, f64)>,
    /// (variant, lines of data fetched per call: `callgrind::data_lines`).
    #[serde(default)]
    pub data_lines: Vec<(String, f64)>,
    /// (variant, locked instructions per call:
    /// `callgrind::locked_instructions`), where they could be counted.
    #[serde(default)]
    pub locked: Vec<(String, f64)>,
}

impl Counts {
    pub fn get(&self, variant: &str) -> Option<f64> {
        find(&self.per_call, variant)
    }

    /// Calls into the allocator per call.
    pub fn allocator_calls(&self, variant: &str) -> Option<f64> {
        find(&self.allocator_calls, variant)
    }

    /// Distinct lines of code run on every call.
    pub fn code_lines(&self, variant: &str) -> Option<f64> {
        find(&self.code_lines, variant)
    }

    /// Lines of data fetched per call.
    pub fn data_lines(&self, variant: &str) -> Option<f64> {
        find(&self.data_lines, variant)
    }

    /// Locked instructions per call.
    pub fn locked(&self, variant: &str) -> Option<f64> {
        find(&self.locked, variant)
    }

    /// Instructions per call outside the allocator.
    pub fn outside_allocator(&self, variant: &str) -> Option<f64> {
        Some(self.get(variant)? - find(&self.in_allocator, variant)?)
    }
}

fn find(list: &[(String, f64)], variant: &str) -> Option<f64> {
    list.iter().find(|(v, _)| v == variant).map(|(_, n)| *n)
}

/// The latencies of one variant in a table of its own (no contender).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Timing {
    pub median_us: f64,
    pub p99_us: f64,
    pub calls: u64,
}

/// `resolve_commit` off and on, one server and transaction
/// ([`crate::resolve`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResolveRow {
    pub backend: Backend,
    pub txn: Txn,
    /// Off, on.
    pub timing: [Timing; 2],
    /// Off, on.
    pub counted: [Counted; 2],
}

/// PostgreSQL's read-modify-write in raw SQL: plain, with the transaction
/// id read before COMMIT, with a marker row ([`crate::resolve`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchemesRow {
    pub timing: [Timing; 3],
    pub counted: [Counted; 3],
}

/// A pool without replicas and one with a replica, one server and workload
/// ([`crate::replicas`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaRow {
    pub backend: Backend,
    pub workload: crate::replicas::Workload,
    /// Without replicas, with a replica.
    pub timing: [Timing; 2],
    /// Where the pool with a replica ran its reads.
    pub routed: Routed,
    /// Recorded calls on the pool with a replica that took at least
    /// [`RYW_TIMEOUT`](crate::replicas::RYW_TIMEOUT): at most as many waits
    /// for the replica ran out.
    pub over_bound: u64,
}

/// Everything one run adds to the report.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct RunResult {
    pub rows: Vec<Row>,
    pub recoveries: Vec<RecoveryRow>,
    pub counts: Vec<Counts>,
    pub resolve: Vec<ResolveRow>,
    pub schemes: Option<SchemesRow>,
    pub replicas: Vec<ReplicaRow>,
    /// Correctness failures: the program exits non-zero.
    pub problems: Vec<String>,
    /// What was skipped, and why.
    pub notes: Vec<String>,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

impl Samples {
    pub fn measured(&self, contender: Contender) -> Measured {
        let t = self.timing();
        Measured {
            contender,
            median_us: t.median_us,
            p99_us: t.p99_us,
            per_s: t.calls as f64 / self.wall.as_secs_f64().max(1e-9),
            calls: t.calls,
            errors: self.errors,
            first_error: self.first_error.clone(),
        }
    }

    pub fn timing(&self) -> Timing {
        let mut sorted = self.nanos.clone();
        sorted.sort_unstable();
        Timing {
            median_us: percentile(&sorted, 0.5) as f64 / 1e3,
            p99_us: percentile(&sorted, 0.99) as f64 / 1e3,
            calls: sorted.len() as u64,
        }
    }
}
