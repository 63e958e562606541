//! The timed steady workloads: interleaved rounds of a backend's contenders,
//! every transaction timed on its own with `Instant`.
//!
//! Each round runs a chunk of transactions for each contender in turn, in an
//! order that changes every round ([`order`]), so that drift of the machine
//! (other tenants, CPU frequency, the server's caches) hits all alike. The
//! single-threaded workloads take turns after every transaction (chunk 1):
//! on a shared two-core machine the latency of a loopback round trip jumps
//! between regimes for seconds at a time, and only the finest interleaving
//! puts the contenders in the same regime (`--chunk N` makes it N, to see
//! what a contender costs with its code and data still in cache). The first rounds warm up
//! (connections opened, statements prepared) and are not recorded.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::contenders::{Backend, Begin, CallError, Contender, Subject, Txn};
use crate::diesel_sync::ROWS;

/// What is timed. The idle-gap workload is in [`crate::idle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Workload {
    PointRead,
    Rmw,
    Contention,
    Idle,
}

impl Workload {
    pub const ALL: [Workload; 4] = [
        Workload::PointRead,
        Workload::Rmw,
        Workload::Contention,
        Workload::Idle,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Workload::PointRead => "point-read",
            Workload::Rmw => "read-modify-write",
            Workload::Contention => "RMW, 16 threads / pool 4",
            Workload::Idle => "point-read after 600 ms idle",
        }
    }

    /// The transaction it runs.
    pub fn txn(self) -> Txn {
        match self {
            Workload::PointRead | Workload::Idle => Txn::PointRead,
            Workload::Rmw | Workload::Contention => Txn::Rmw,
        }
    }

    /// Steady state: back-to-back transactions, where a ping is never due.
    pub fn steady(self) -> bool {
        matches!(self, Workload::PointRead | Workload::Rmw)
    }

    /// Whether `who` takes part in this workload on `backend`. Not raw
    /// `transaction` on SQLite under contention: a deferred read-modify-write
    /// fails with `database is locked` (SQLITE_BUSY, which `busy_timeout` does
    /// not wait out) when it upgrades its read to a write while another
    /// connection writes, and a baseline whose calls fail is no baseline.
    /// Not `#[db_txn(pool = pool)]` under contention, where a lookup's few
    /// nanoseconds are far below the spread: its place is beside `#[db_txn]`
    /// in the steady workloads (and it costs the contention workload a
    /// fifth more time).
    pub fn takes_part(self, backend: Backend, who: Contender) -> bool {
        match (self, who) {
            (Workload::Contention, Contender::DbTxnExplicit) => false,
            (Workload::Contention, Contender::Raw(Begin::Transaction, _)) => {
                backend != Backend::Sqlite
            }
            _ => true,
        }
    }
}

/// How much work a run does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Config {
    /// Recorded rounds.
    pub rounds: usize,
    /// Unrecorded rounds first.
    pub warmup: usize,
    /// Transactions per contender per round, single-threaded workloads.
    pub chunk: usize,
    /// Recorded and unrecorded rounds of the contention workload.
    pub contention_rounds: usize,
    pub contention_warmup: usize,
    /// Caller threads of the contention workload.
    pub threads: usize,
    /// Transactions per thread per round, contention workload.
    pub per_thread: usize,
    /// Calls per contender of the idle-gap workload.
    pub idle_calls: usize,
    /// Transactions per variant in each counted stretch of the
    /// `resolve_commit` table (round trips, what the server wrote).
    pub counted: u64,
    /// How long the recovery workload runs before the restart, and how long
    /// it waits for every contender to succeed again after it.
    pub recovery_before: Duration,
    pub recovery_limit: Duration,
}

/// Per-transaction latencies of one contender in one workload.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// In the order they were taken.
    pub nanos: Vec<u64>,
    /// Wall time of the recorded rounds (for throughput).
    pub wall: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// What every contender got acknowledged, for the final consistency check.
#[derive(Debug)]
pub struct Tally {
    /// Read-modify-writes whose caller was told they committed.
    pub acked: Vec<AtomicU64>,
    /// Read-modify-writes whose outcome the caller cannot know.
    pub uncertain: Vec<AtomicU64>,
}

impl Tally {
    pub fn new(contenders: usize) -> Self {
        let zeros = || (0..contenders).map(|_| AtomicU64::new(0)).collect();
        Tally {
            acked: zeros(),
            uncertain: zeros(),
        }
    }

    pub fn record(&self, who: usize, txn: Txn, result: &Result<(), CallError>) {
        if txn != Txn::Rmw {
            return;
        }
        match result {
            Ok(()) => self.acked[who].fetch_add(1, Relaxed),
            Err(_) => self.uncertain[who].fetch_add(1, Relaxed),
        };
    }
}

/// The order of `n` contenders in round `round`, from a Williams design
/// (a balanced Latin square): over every cycle of `n` rounds (`2n` when `n`
/// is odd, the second half the first reversed), every contender takes
/// every place equally often and, within a round, follows every other
/// contender equally often. What ran just before a call (another pool's
/// connection, another SQLite file, r2d2's ping) leaves the CPU's caches
/// and the database in a state that changes the call's time; the design
/// spreads that over all contenders alike. (A rotation by one each round
/// would give each contender only two predecessors, always the same two,
/// once there are more than three contenders.)
pub fn order(round: usize, n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    // The first row: 0, 1, n-1, 2, n-2, 3, ...; row i adds i to each.
    let first = (0..n).map(|j| match j % 2 {
        1 => j.div_ceil(2),
        _ => (n - j / 2) % n,
    });
    let row = first.map(|c| (c + round) % n);
    if n % 2 == 1 && (round / n) % 2 == 1 {
        row.rev().collect()
    } else {
        row.collect()
    }
}

/// The smoke run's check of [`order`]: over one cycle, for 1 to 8
/// contenders, every round is a permutation, every contender takes every
/// place equally often, and every contender follows every other equally
/// often within a round.
pub fn check_order() -> Result<(), String> {
    for n in 1..=8usize {
        let cycle = if n % 2 == 1 { 2 * n } else { n };
        let mut place = vec![vec![0usize; n]; n];
        let mut follows = vec![vec![0usize; n]; n];
        for round in 0..cycle {
            let row = order(round, n);
            let mut sorted = row.clone();
            sorted.sort_unstable();
            if sorted != (0..n).collect::<Vec<_>>() {
                return Err(format!("order({round}, {n}) = {row:?}: not a permutation"));
            }
            for (at, who) in row.iter().enumerate() {
                place[*who][at] += 1;
            }
            for pair in row.windows(2) {
                follows[pair[1]][pair[0]] += 1;
            }
        }
        let even = |counts: Vec<usize>| counts.windows(2).all(|w| w[0] == w[1]);
        if !even(place.concat()) {
            return Err(format!("order, {n} contenders: places not even: {place:?}"));
        }
        let pairs: Vec<usize> = (0..n)
            .flat_map(|a| (0..n).filter(move |b| *b != a).map(move |b| (a, b)))
            .map(|(a, b)| follows[a][b])
            .collect();
        if !even(pairs) {
            return Err(format!(
                "order, {n} contenders: predecessors not even: {follows:?}"
            ));
        }
    }
    Ok(())
}

/// A row id spread over the table, from a counter.
pub fn row(n: u64) -> i64 {
    (n.wrapping_mul(7919) % ROWS as u64) as i64
}

impl Samples {
    pub fn add(&mut self, round: Vec<u64>, wall: Duration) {
        self.nanos.extend(round);
        self.wall += wall;
    }

    pub fn error(&mut self, e: CallError) {
        self.errors += 1;
        self.first_error.get_or_insert(e.message);
    }
}

fn samples(subject: &dyn Subject) -> Vec<Samples> {
    vec![Samples::default(); subject.contenders().len()]
}

/// One caller thread running `txn` back to back.
pub fn single(subject: &dyn Subject, txn: Txn, cfg: &Config, tally: &Tally) -> Vec<Samples> {
    let mut out = samples(subject);
    let mut n = 0u64;
    for round in 0..cfg.warmup + cfg.rounds {
        for who in order(round, out.len()) {
            let s = &mut out[who];
            let mut lat = Vec::with_capacity(cfg.chunk);
            let start = Instant::now();
            for _ in 0..cfg.chunk {
                n += 1;
                let t0 = Instant::now();
                let result = subject.call(who, txn, row(n));
                lat.push(t0.elapsed().as_nanos() as u64);
                tally.record(who, txn, &result);
                if let Err(e) = result {
                    s.error(e);
                }
            }
            if round >= cfg.warmup {
                s.add(lat, start.elapsed());
            }
        }
    }
    out
}

/// `n` variants of a table of their own (no [`Subject`]) taking turns after
/// every transaction, in the order [`order`] gives, the first `cfg.warmup`
/// rounds not recorded. `call(variant, round)`: the round picks the row, so
/// that all variants work on the same rows.
pub fn turns(
    n: usize,
    cfg: &Config,
    call: &mut dyn FnMut(usize, u64) -> Result<(), CallError>,
) -> Vec<Samples> {
    let mut out = vec![Samples::default(); n];
    for round in 0..cfg.warmup + cfg.rounds {
        for who in order(round, n) {
            let t0 = Instant::now();
            let result = call(who, round as u64);
            let took = t0.elapsed();
            let s = &mut out[who];
            if let Err(e) = result {
                s.error(e);
            }
            if round >= cfg.warmup {
                s.nanos.push(took.as_nanos() as u64);
                s.wall += took;
            }
        }
    }
    out
}

/// `cfg.threads` caller threads sharing each contender's pool of
/// [`POOL_SIZE`](crate::diesel_sync::POOL_SIZE), running read-modify-writes
/// on random rows; latency includes the wait for a connection. Only the
/// contenders `part` (indices) take part; the others' samples stay empty.
pub fn contention(
    subject: &dyn Subject,
    part: &[usize],
    cfg: &Config,
    tally: &Tally,
) -> Vec<Samples> {
    let mut out = samples(subject);
    for round in 0..cfg.contention_warmup + cfg.contention_rounds {
        for who in order(round, part.len()).into_iter().map(|i| part[i]) {
            let (lat, wall, errors) = contention_round(subject, who, round, cfg, tally);
            let s = &mut out[who];
            errors.into_iter().for_each(|e| s.error(e));
            if round >= cfg.contention_warmup {
                s.add(lat, wall);
            }
        }
    }
    out
}

fn contention_round(
    subject: &dyn Subject,
    who: usize,
    round: usize,
    cfg: &Config,
    tally: &Tally,
) -> (Vec<u64>, Duration, Vec<CallError>) {
    let go = Barrier::new(cfg.threads);
    let errors = Mutex::new(Vec::new());
    let runs: Vec<(Vec<u64>, Instant, Instant)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cfg.threads)
            .map(|t| {
                let (go, errors) = (&go, &errors);
                scope.spawn(move || {
                    // xorshift64: the same row sequence for every contender.
                    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ ((round * 64 + t) as u64 + 1);
                    let mut lat = Vec::with_capacity(cfg.per_thread);
                    go.wait();
                    let first = Instant::now();
                    for _ in 0..cfg.per_thread {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let t0 = Instant::now();
                        let result = subject.call(who, Txn::Rmw, (x % ROWS as u64) as i64);
                        lat.push(t0.elapsed().as_nanos() as u64);
                        tally.record(who, Txn::Rmw, &result);
                        if let Err(e) = result {
                            errors.lock().unwrap_or_else(|e| e.into_inner()).push(e);
                        }
                    }
                    (lat, first, Instant::now())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("caller thread"))
            .collect()
    });
    // From the first thread's first call to the last thread's last.
    let start = runs.iter().map(|r| r.1).min();
    let end = runs.iter().map(|r| r.2).max();
    let wall = start.zip(end).map_or(Duration::ZERO, |(s, e)| e - s);
    let lat = runs.into_iter().flat_map(|r| r.0).collect();
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    (lat, wall, errors)
}
