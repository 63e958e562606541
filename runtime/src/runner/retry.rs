//! The retry rule: what the loop does after an attempt that did not
//! simply end. Out of line and cold, so that the path a call takes when
//! nothing fails is laid out apart from it (fewer lines of code for the CPU
//! to fetch on each call).

use std::panic::resume_unwind;
use std::thread;
use std::time::Duration;

use super::{upfront, Attempt};
use crate::classify::Disconnect;
use crate::stats::Counters;
use crate::{Error, Options, Pool, TxnConnection};

/// The retry loop's state.
pub(super) struct Tries {
    pub(super) attempts: u32,
    pub(super) lost: u32,
    pub(super) conflicts: u32,
    pub(super) lock_upfront: bool,
}

/// What the loop does next.
pub(super) enum Next<T, E> {
    /// Run the body again.
    Again,
    Return(Result<T, E>),
}

/// Everything after an attempt that did not simply end.
#[cold]
#[inline(never)]
pub(super) fn after_attempt<C, T, E>(
    pool: &Pool<C>,
    options: &Options,
    tries: &mut Tries,
    outcome: Attempt<T, E>,
) -> Next<T, E>
where
    C: TxnConnection,
    E: From<Error>,
{
    let counters = pool.counters();
    match outcome {
        Attempt::Done(result) => Next::Return(result),
        Attempt::Panicked(payload) => resume_unwind(payload),
        Attempt::Forked(panic) => {
            tracing::warn!(
                target: "db_txn",
                pid = std::process::id(),
                "forked inside a transaction: the child leaves the parent's transaction alone"
            );
            if let Some(payload) = panic {
                resume_unwind(payload)
            }
            Next::Return(Err(Error::Forked {
                function: options.name,
            }
            .into()))
        }
        Attempt::Lost { kind, source } => {
            match lost(
                options,
                counters,
                &mut tries.lost,
                tries.attempts,
                kind,
                source,
            ) {
                Ok(()) => {
                    pool.lost_before_retry(kind);
                    Next::Again
                }
                Err(e) => Next::Return(Err(e.into())),
            }
        }
        Attempt::Upgrade => {
            upfront::remember(options.name);
            tries.lock_upfront = true;
            Counters::bump(&counters.retries);
            tracing::debug!(
                target: "db_txn",
                "SQLite: the first write found the database locked since the transaction read; \
                 beginning again with BEGIN IMMEDIATE"
            );
            Next::Again
        }
        Attempt::Conflict(result) => match conflict(options, counters, &mut tries.conflicts) {
            Some(pause) => {
                thread::sleep(pause);
                Next::Again
            }
            None => Next::Return(result),
        },
        // Turned into one of the above by `commit::settle`.
        Attempt::CommitLost(_) => unreachable!("a lost COMMIT is settled first"),
    }
}

/// A connection lost before COMMIT, nothing committed (the sync and the
/// async runner): `Ok(())` while `options.retry` allows another attempt
/// (counted in `lost` and the pool's retries; the caller tells its pool),
/// else the error for the caller.
pub(crate) fn lost(
    options: &Options,
    counters: &Counters,
    lost: &mut u32,
    attempts: u32,
    kind: Disconnect,
    source: diesel::result::Error,
) -> Result<(), Error> {
    tracing::warn!(target: "db_txn", kind = %kind, "disconnect detected before COMMIT");
    if *lost < options.retry {
        *lost += 1;
        Counters::bump(&counters.retries);
        tracing::info!(
            target: "db_txn",
            kind = %kind,
            "connection lost before COMMIT: nothing committed, running the body again"
        );
        return Ok(());
    }
    tracing::error!(
        target: "db_txn",
        kind = %kind,
        attempts,
        "connection lost before COMMIT on every attempt: giving up"
    );
    Err(Error::Disconnected {
        function: options.name,
        attempts,
        kind,
        source,
    })
}

/// A deadlock or serialization failure, rolled back (the sync and the async
/// runner): the pause before the body runs again while
/// `options.retry_conflicts` allows (counted in `conflicts` and the pool's
/// retries), else `None`.
pub(crate) fn conflict(
    options: &Options,
    counters: &Counters,
    conflicts: &mut u32,
) -> Option<Duration> {
    if *conflicts >= options.retry_conflicts {
        return None;
    }
    *conflicts += 1;
    Counters::bump(&counters.retries);
    tracing::info!(
        target: "db_txn",
        "deadlock or serialization failure: rolled back, running the body again"
    );
    Some(backoff(*conflicts))
}

/// 10 ms, 20 ms, 40 ms, ... up to 1 s, with up to 50 % jitter so that the
/// transactions that collided do not collide again.
fn backoff(retry: u32) -> Duration {
    let base = Duration::from_millis(10)
        .saturating_mul(1 << retry.saturating_sub(1).min(7))
        .min(Duration::from_secs(1));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 2000.0)
}
