//! The timed workloads: interleaved rounds of the three contenders, every
//! transaction timed on its own with `Instant`.
//!
//! Each round runs a chunk of transactions for each contender in turn, in an
//! order that cycles through all six permutations, so that drift of the
//! machine (other tenants, CPU frequency, the server's caches) hits the three
//! alike. The single-threaded workloads take turns after every transaction
//! (chunk 1): on a shared two-core machine the latency of a loopback round
//! trip jumps between regimes for seconds at a time, and only the finest
//! interleaving puts the three contenders in the same regime. The first
//! rounds warm up (connections opened, statements prepared) and are not
//! recorded.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::contenders::{CallError, Contender, Subject, Txn, ROWS};

/// How much work a run does.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Recorded rounds.
    pub rounds: usize,
    /// Unrecorded rounds first.
    pub warmup: usize,
    /// Transactions per contender per round, single-threaded workloads.
    pub chunk: usize,
    /// Samples per block, single-threaded workloads: the ratio of the
    /// contenders' block medians shows how much the ratio moves over time.
    pub block: usize,
    /// Recorded and unrecorded rounds of the contention workload.
    pub contention_rounds: usize,
    pub contention_warmup: usize,
    /// Caller threads of the contention workload.
    pub threads: usize,
    /// Transactions per thread per round, contention workload.
    pub per_thread: usize,
}

/// Per-transaction latencies of one contender in one workload.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    /// In the order they were taken.
    pub nanos: Vec<u64>,
    /// Consecutive samples taken in the same stretch of time as the other
    /// contenders' block of the same index.
    pub block: usize,
    /// Wall time of the recorded rounds (for throughput).
    pub wall: Duration,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// What every contender got acknowledged, for the final consistency check.
#[derive(Debug, Default)]
pub struct Tally {
    /// Read-modify-writes whose caller was told they committed.
    pub acked: [AtomicU64; 3],
    /// Read-modify-writes whose outcome the caller cannot know.
    pub uncertain: [AtomicU64; 3],
}

impl Tally {
    pub fn record(&self, who: Contender, txn: Txn, result: &Result<(), CallError>) {
        if txn != Txn::Rmw {
            return;
        }
        match result {
            Ok(()) => self.acked[who.index()].fetch_add(1, Relaxed),
            Err(_) => self.uncertain[who.index()].fetch_add(1, Relaxed),
        };
    }
}

/// The order of the contenders in round `round`.
fn order(round: usize) -> [Contender; 3] {
    const P: [[usize; 3]; 6] = [
        [0, 1, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
        [1, 0, 2],
        [0, 2, 1],
    ];
    P[round % 6].map(|i| Contender::ALL[i])
}

/// A row id spread over the table, from a counter.
fn row(n: u64) -> i64 {
    (n.wrapping_mul(7919) % ROWS as u64) as i64
}

impl Samples {
    fn add(&mut self, round: Vec<u64>, wall: Duration) {
        self.nanos.extend(round);
        self.wall += wall;
    }

    /// The median of each block.
    pub fn block_medians(&self) -> Vec<u64> {
        self.nanos
            .chunks(self.block.max(1))
            .map(|b| {
                let mut b = b.to_vec();
                b.sort_unstable();
                b[b.len() / 2]
            })
            .collect()
    }

    fn error(&mut self, e: CallError) {
        self.errors += 1;
        self.first_error.get_or_insert(e.message);
    }
}

/// One caller thread running `txn` back to back.
pub fn single(subject: &dyn Subject, txn: Txn, cfg: &Config, tally: &Tally) -> [Samples; 3] {
    let mut out: [Samples; 3] = Default::default();
    out.iter_mut().for_each(|s| s.block = cfg.block);
    let mut n = 0u64;
    for round in 0..cfg.warmup + cfg.rounds {
        for who in order(round) {
            let s = &mut out[who.index()];
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

/// `cfg.threads` caller threads sharing each contender's pool of
/// [`POOL_SIZE`](crate::contenders::POOL_SIZE), running read-modify-writes on
/// random rows; latency includes the wait for a connection.
pub fn contention(subject: &dyn Subject, cfg: &Config, tally: &Tally) -> [Samples; 3] {
    let mut out: [Samples; 3] = Default::default();
    out.iter_mut()
        .for_each(|s| s.block = cfg.threads * cfg.per_thread);
    for round in 0..cfg.contention_warmup + cfg.contention_rounds {
        for who in order(round) {
            let (lat, wall, errors) = contention_round(subject, who, round, cfg, tally);
            let s = &mut out[who.index()];
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
    who: Contender,
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
