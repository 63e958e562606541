//! The idle-gap workload: what a quiet service pays per call.
//!
//! A point-read every [`GAP`], longer than `#[db_txn]`'s default
//! `ping_window` (500 ms), so that each call checks out a connection that
//! has been idle for longer than the window: `#[db_txn]` pings it (one round
//! trip), raw r2d2 with `test_on_check_out` pings it as it pings every
//! checkout, raw r2d2 without skips the ping. All contenders of all backends
//! take part in every tick (in an order that changes every tick), so that
//! their gaps overlap and the workload costs [`GAP`] per call, not per call
//! and contender. The `#[db_txn]` pool's ping counter says whether it pinged.

use std::time::{Duration, Instant};

use crate::contenders::{Subject, Txn};
use crate::workloads::{order, row, Samples, Tally};

/// From the start of one tick to the start of the next.
pub const GAP: Duration = Duration::from_millis(600);

/// One backend's share of the workload.
pub struct Idle {
    pub samples: Vec<Samples>,
    /// Pings and skipped pings of the `#[db_txn]` pool during the workload.
    pub pings: (u64, u64),
}

/// `calls` ticks over `subjects` (with their tallies); `offset` shifts the
/// orders, so that successive runs continue the rotation.
pub fn run(subjects: &[(&dyn Subject, &Tally)], calls: usize, offset: usize) -> Vec<Idle> {
    let before: Vec<(u64, u64)> = subjects.iter().map(|(s, _)| s.db_txn_pings()).collect();
    let mut out: Vec<Vec<Samples>> = subjects
        .iter()
        .map(|(s, _)| vec![Samples::default(); s.contenders().len()])
        .collect();
    // The connections were in use just before: the first tick waits too.
    let mut tick_start = Instant::now();
    for tick in 0..calls {
        std::thread::sleep(GAP.saturating_sub(tick_start.elapsed()));
        tick_start = Instant::now();
        let n = tick + offset;
        for b in order(n, subjects.len()) {
            let (subject, tally) = subjects[b];
            for who in order(n, out[b].len()) {
                let t0 = Instant::now();
                let result = subject.call(who, Txn::PointRead, row(n as u64));
                let took = t0.elapsed();
                tally.record(who, Txn::PointRead, &result);
                let s = &mut out[b][who];
                s.add(vec![took.as_nanos() as u64], took);
                if let Err(e) = result {
                    s.error(e);
                }
            }
        }
    }
    out.into_iter()
        .zip(subjects.iter().zip(before))
        .map(|(samples, ((subject, _), (p0, s0)))| {
            let (p1, s1) = subject.db_txn_pings();
            Idle {
                samples,
                pings: (p1 - p0, s1 - s0),
            }
        })
        .collect()
}
