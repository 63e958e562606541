//! The recovery workload: the server restarts in the middle of a steady run.
//!
//! One caller thread per contender runs read-modify-writes, one every
//! [`PERIOD`], all at once so that they see the same restart. After
//! `Config::recovery_before` the server is stopped gracefully (its clients are disconnected)
//! and started again by the kit; "up" is when the kit sees it accept
//! connections again. The run goes on until every contender has succeeded
//! after up (or a limit passed: `Config::recovery_limit`), then [`AFTER`]
//! more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::contenders::{CallError, Subject, Txn};
use crate::diesel_sync::ROWS;
use crate::workloads::Tally;

pub const PERIOD: Duration = Duration::from_millis(2);
pub const AFTER: Duration = Duration::from_millis(500);

/// What one contender's caller saw.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Recovery {
    pub calls: u64,
    pub errors: u64,
    /// Errors of calls started after up.
    pub errors_after_up: u64,
    pub commit_unknown: u64,
    pub first_error: Option<String>,
    /// The first error of a call started after up.
    pub first_error_after_up: Option<String>,
    /// From up to the end of the first successful call ending after up.
    pub first_ok_after_up: Option<Duration>,
    /// The first call started after up: its latency and whether it succeeded.
    pub first_call_after_up: Option<(Duration, bool)>,
    pub longest_call: Duration,
}

/// The restart, as the run saw it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Restart {
    /// From the stop signal to the server accepting connections again.
    pub downtime: Duration,
    /// One `establish` on the restarted server (median of 5).
    pub reconnect: Duration,
}

struct Call {
    start: Duration,
    end: Duration,
    /// `None` if it succeeded.
    error: Option<CallError>,
}

/// Runs the workload around `restart`; `reconnect` measures one connect.
/// One [`Recovery`] per contender of `subject`.
pub fn run(
    subject: &dyn Subject,
    restart: &(dyn Fn() + Sync),
    reconnect: &dyn Fn() -> Duration,
    tally: &Tally,
    (before, limit): (Duration, Duration),
) -> (Restart, Vec<Recovery>) {
    let base = Instant::now();
    let stop = AtomicBool::new(false);
    let n = subject.contenders().len();
    let last_ok: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let mut up = Duration::ZERO;
    let mut stopped = Duration::ZERO;
    let calls = thread::scope(|scope| {
        let callers: Vec<_> = (0..n)
            .map(|who| {
                let (stop, last_ok) = (&stop, &last_ok);
                scope.spawn(move || caller(subject, who, base, stop, &last_ok[who], tally))
            })
            .collect();
        thread::sleep(before);
        stopped = base.elapsed();
        restart();
        up = base.elapsed();
        let all_ok = || {
            last_ok
                .iter()
                .all(|t| t.load(Relaxed) > up.as_nanos() as u64)
        };
        while !all_ok() && base.elapsed() < up + limit {
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(AFTER);
        stop.store(true, Relaxed);
        callers
            .into_iter()
            .map(|c| c.join().expect("caller thread"))
            .collect::<Vec<_>>()
    });
    let mut times: Vec<Duration> = (0..5).map(|_| reconnect()).collect();
    times.sort_unstable();
    let restart = Restart {
        downtime: up - stopped,
        reconnect: times[2],
    };
    (restart, calls.iter().map(|c| summarize(c, up)).collect())
}

/// One contender's caller: a read-modify-write every [`PERIOD`] until `stop`.
fn caller(
    subject: &dyn Subject,
    who: usize,
    base: Instant,
    stop: &AtomicBool,
    last_ok: &AtomicU64,
    tally: &Tally,
) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut next = Instant::now();
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        n += 1;
        let start = base.elapsed();
        let result = subject.call(who, Txn::Rmw, (n * 31 % ROWS as u64) as i64);
        let end = base.elapsed();
        tally.record(who, Txn::Rmw, &result);
        if result.is_ok() {
            last_ok.fetch_max(end.as_nanos() as u64, Relaxed);
        }
        calls.push(Call {
            start,
            end,
            error: result.err(),
        });
        next += PERIOD;
        match next.checked_duration_since(Instant::now()) {
            Some(wait) => thread::sleep(wait),
            None => next = Instant::now(),
        }
    }
    calls
}

fn summarize(calls: &[Call], up: Duration) -> Recovery {
    let after_up = || calls.iter().filter(|c| c.start >= up);
    let errors = || calls.iter().filter_map(|c| c.error.as_ref());
    Recovery {
        calls: calls.len() as u64,
        errors: errors().count() as u64,
        errors_after_up: after_up().filter(|c| c.error.is_some()).count() as u64,
        commit_unknown: errors().filter(|e| e.commit_unknown).count() as u64,
        first_error: errors().next().map(|e| e.message.clone()),
        first_error_after_up: after_up()
            .find_map(|c| c.error.as_ref())
            .map(|e| e.message.clone()),
        first_ok_after_up: calls
            .iter()
            .find(|c| c.error.is_none() && c.end > up)
            .map(|c| c.end - up),
        first_call_after_up: after_up()
            .next()
            .map(|c| (c.end - c.start, c.error.is_none())),
        longest_call: calls
            .iter()
            .map(|c| c.end - c.start)
            .max()
            .unwrap_or_default(),
    }
}
