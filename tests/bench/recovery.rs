//! The recovery workload: the server restarts in the middle of a steady run.
//!
//! One caller thread per contender runs read-modify-writes, one every
//! [`PERIOD`], all at once so that they see the same restart. After
//! `Config::recovery_before` the server is stopped gracefully (its clients are disconnected)
//! and started again by the kit. "Up" is when a watcher thread, connecting
//! every [`WATCH`] from the stop on, first got a connection: the start of
//! that connect. (The kit's own readiness probe asks every 10 ms, too
//! seldom to judge a budget of half a millisecond.) The run goes on until
//! every contender has succeeded after up (or a limit passed:
//! `Config::recovery_limit`), then [`AFTER`] more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::contenders::{CallError, Subject, Txn};
use crate::diesel_sync::ROWS;
use crate::workloads::Tally;

pub const PERIOD: Duration = Duration::from_millis(2);
pub const AFTER: Duration = Duration::from_millis(500);
/// How often the watcher tries to connect while the server is down.
pub const WATCH: Duration = Duration::from_micros(250);
/// How long the watcher goes on trying after the kit saw the server up.
const WATCH_AFTER_KIT: Duration = Duration::from_secs(5);

/// How the run restarts the server and sees it back.
pub struct Restarter<'a> {
    /// Graceful stop; returns once the server has exited.
    pub stop: Box<dyn Fn() + Sync + 'a>,
    /// Start again; returns once the kit's probe got a connection.
    pub start: Box<dyn Fn() + Sync + 'a>,
    /// One connect: how long it took, or why it failed.
    pub connect: Box<dyn Fn() -> Result<Duration, String> + Sync + 'a>,
}

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
    /// How long the caller waited for its first success once the server
    /// was up: to the end of its first successful call ending after up,
    /// from up, or from that call's start if it started after up and no
    /// call of this caller failed after up (a caller between two calls is
    /// not waiting).
    pub first_ok_after_up: Option<Duration>,
    /// The first call started after up: its latency and whether it succeeded.
    pub first_call_after_up: Option<(Duration, bool)>,
    pub longest_call: Duration,
}

/// The restart, as the run saw it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Restart {
    /// From the stop signal to the server accepting connections again (up).
    pub downtime: Duration,
    /// From up to the kit's start returning (its probe polls every 10 ms).
    pub kit_lag: Duration,
    /// The watcher's first successful connect, at up: a server just started
    /// answers its first connections more slowly than later ones.
    pub first_connect: Duration,
    /// One `establish` on the restarted server (median of 5).
    pub reconnect: Duration,
}

struct Call {
    start: Duration,
    end: Duration,
    /// `None` if it succeeded.
    error: Option<CallError>,
}

/// Runs the workload around a restart by `restarter`.
/// One [`Recovery`] per contender of `subject`.
pub fn run(
    subject: &dyn Subject,
    restarter: &Restarter<'_>,
    tally: &Tally,
    (before, limit): (Duration, Duration),
) -> (Restart, Vec<Recovery>) {
    let base = Instant::now();
    let stop = AtomicBool::new(false);
    let n = subject.contenders().len();
    let last_ok: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let mut up = Duration::ZERO;
    let mut first_connect = Duration::ZERO;
    let mut stopped = Duration::ZERO;
    let kit_saw_up = AtomicU64::new(0);
    let calls = thread::scope(|scope| {
        let callers: Vec<_> = (0..n)
            .map(|who| {
                let (stop, last_ok) = (&stop, &last_ok);
                scope.spawn(move || caller(subject, who, base, stop, &last_ok[who], tally))
            })
            .collect();
        // Should the restart panic, the callers and the watcher still end
        // (the scope waits for them before it passes the panic on).
        let end_of_run = EndOfRun {
            stop: &stop,
            kit_saw_up: &kit_saw_up,
        };
        thread::sleep(before);
        stopped = base.elapsed();
        (restarter.stop)();
        let watcher = scope.spawn(|| watch_up(base, &*restarter.connect, &kit_saw_up));
        (restarter.start)();
        kit_saw_up.store(base.elapsed().as_nanos() as u64, Relaxed);
        (up, first_connect) = watcher.join().expect("watcher thread");
        let all_ok = || {
            last_ok
                .iter()
                .all(|t| t.load(Relaxed) > up.as_nanos() as u64)
        };
        while !all_ok() && base.elapsed() < up + limit {
            thread::sleep(Duration::from_millis(5));
        }
        thread::sleep(AFTER);
        drop(end_of_run);
        callers
            .into_iter()
            .map(|c| c.join().expect("caller thread"))
            .collect::<Vec<_>>()
    });
    let mut times: Vec<Duration> = (0..5)
        .map(|_| (restarter.connect)().unwrap_or_else(|e| panic!("after the restart: {e}")))
        .collect();
    times.sort_unstable();
    let restart = Restart {
        downtime: up - stopped,
        kit_lag: Duration::from_nanos(kit_saw_up.load(Relaxed)).saturating_sub(up),
        first_connect,
        reconnect: times[2],
    };
    (restart, calls.iter().map(|c| summarize(c, up)).collect())
}

/// Ends the callers (and lets the watcher give up) when dropped: at the
/// end of the run, or while a panic of the restart unwinds.
struct EndOfRun<'a> {
    stop: &'a AtomicBool,
    kit_saw_up: &'a AtomicU64,
}

impl Drop for EndOfRun<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        // Nonzero: the watcher stops WATCH_AFTER_KIT after the run began.
        self.kit_saw_up.fetch_max(1, Relaxed);
    }
}

/// Connects every [`WATCH`] until a connect succeeds; returns when (since
/// `base`) that connect started, and how long it took. `kit_saw_up` is when
/// the kit saw the server up (0 until then): the watcher gives up
/// [`WATCH_AFTER_KIT`] later.
fn watch_up(
    base: Instant,
    connect: &(dyn Fn() -> Result<Duration, String> + Sync),
    kit_saw_up: &AtomicU64,
) -> (Duration, Duration) {
    loop {
        let start = base.elapsed();
        let error = match connect() {
            Ok(took) => return (start, took),
            Err(e) => e,
        };
        let kit = kit_saw_up.load(Relaxed);
        if kit != 0 && start > Duration::from_nanos(kit) + WATCH_AFTER_KIT {
            panic!(
                "no connect succeeded within {WATCH_AFTER_KIT:?} of the kit's start returning \
                 (or of the run ending): {error}"
            );
        }
        thread::sleep(WATCH);
    }
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

/// See [`Recovery::first_ok_after_up`].
fn first_ok_after_up(calls: &[Call], up: Duration) -> Option<Duration> {
    let i = calls.iter().position(|c| c.error.is_none() && c.end > up)?;
    let ok = &calls[i];
    let failed_after_up = calls[..i].iter().any(|c| c.end > up && c.error.is_some());
    let from = if failed_after_up {
        up
    } else {
        ok.start.max(up)
    };
    Some(ok.end - from)
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
        first_ok_after_up: first_ok_after_up(calls, up),
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

/// What [`first_ok_after_up`] makes of three hand-written callers (checked
/// by `--smoke`): one blocked in a call across up, one idle at up with no
/// failure, one that failed after up.
pub fn check_first_ok() -> Result<(), String> {
    let ms = Duration::from_millis;
    let call = |start: u64, end: u64, failed: bool| Call {
        start: ms(start),
        end: ms(end),
        error: failed.then(|| CallError {
            message: "down".into(),
            commit_unknown: false,
        }),
    };
    let up = ms(100);
    let cases = [
        ("blocked across up", vec![call(10, 104, false)], ms(4)),
        (
            "idle at up",
            vec![call(96, 97, false), call(99, 103, false)],
            ms(3),
        ),
        (
            "idle at up, next call after up",
            vec![call(96, 97, false), call(102, 105, false)],
            ms(3),
        ),
        (
            "failed after up",
            vec![call(99, 101, true), call(106, 107, false)],
            ms(7),
        ),
    ];
    for (what, calls, want) in cases {
        let got = first_ok_after_up(&calls, up);
        if got != Some(want) {
            return Err(format!(
                "recovery, {what}: first success after up {got:?}, not {want:?}"
            ));
        }
    }
    Ok(())
}
