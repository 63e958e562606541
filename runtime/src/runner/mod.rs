//! The transaction runner and its retry rule.
//!
//! The outermost call owns the transaction: it checks a connection out,
//! BEGINs, runs the body, COMMITs on `Ok` and ROLLBACKs on `Err` or panic.
//! When the connection turns out to be gone *before COMMIT was sent* (at
//! BEGIN, inside the body, or revealed by the ROLLBACK after the body
//! returned `Err`), the connection is discarded and the whole body runs again
//! on a fresh one, up to `retry` times. A connection lost *during* COMMIT
//! gives [`Error::CommitUnknown`] and is never retried. Calls that join a lent
//! connection run in a SAVEPOINT and never retry on their own.

mod commit;
pub(crate) mod commit_failure;
mod nested;
mod retry;
mod rollback;
mod single_writer;
mod upfront;

use std::hint::cold_path;
use std::panic::{catch_unwind, AssertUnwindSafe};

use diesel::connection::{AnsiTransactionManager, TransactionManager};

use crate::backend::{txn_sql, TxnConnection, TxnSql};
use crate::classify::Disconnect;
use crate::error::Step;
use crate::pool::flags::Flags;
use crate::pool::tracked::Tracked;
use crate::pool::{self, PooledConnection};
use crate::session::{self, Lookup, Settings};
use crate::stats::Counters;
use crate::{registry, Error, Options, Pool};
use commit::Failure;
use commit_failure::Meaning;
use retry::{after_attempt, Next, Tries};
#[cfg(feature = "async")]
pub(crate) use retry::{conflict, lost};
pub(crate) use rollback::rolling_back;
#[cfg(feature = "async")]
pub(crate) use rollback::{after_error, AfterError};
use rollback::{body_failed, body_panicked};

type Tm = AnsiTransactionManager;

/// Which pool a call uses.
pub enum Target<'a, C: TxnConnection> {
    /// The pool [`install`](crate::install)ed for `C`.
    Default,
    /// `#[db_txn(pool = ...)]`.
    Explicit(&'a Pool<C>),
}

/// Run `body` in a transaction as the options of `options` say.
pub(crate) fn run<C, T, E, F>(target: Target<'_, C>, options: Options, mut body: F) -> Result<T, E>
where
    C: TxnConnection,
    E: From<Error>,
    F: FnMut(&mut C) -> Result<T, E>,
{
    let installed;
    let pool = match target {
        Target::Explicit(pool) => Some(pool),
        Target::Default => {
            installed = registry::installed::<C>();
            installed.as_ref()
        }
    };
    if !options.requires_new {
        match session::lookup::<C>(pool.map(Pool::id)) {
            Lookup::Free => {}
            Lookup::Busy { holder } => {
                cold_path();
                return Err(Error::ConnectionBorrowed {
                    function: options.name,
                    holder,
                }
                .into());
            }
            Lookup::Lent(lent) => return nested::join(lent, &options, &mut body),
        }
    }
    match pool {
        Some(pool) => outermost(pool, &options, &mut body),
        None => {
            cold_path();
            Err(Error::NoPool {
                connection: std::any::type_name::<C>(),
                function: options.name,
            }
            .into())
        }
    }
}

/// How one attempt of the outermost call ended.
enum Attempt<T, E> {
    /// Return this to the caller.
    Done(Result<T, E>),
    /// The connection was lost before COMMIT was sent: nothing committed.
    /// Holds the driver's error that revealed it.
    Lost {
        kind: Disconnect,
        source: diesel::result::Error,
    },
    /// A deadlock or serialization failure: rolled back, may be retried.
    Conflict(Result<T, E>),
    /// SQLite: a transaction begun without the write lock could not take it
    /// (another connection wrote since it read): rolled back, to begin again
    /// with the lock.
    Upgrade,
    /// The body panicked; the transaction was rolled back.
    Panicked(Box<dyn std::any::Any + Send>),
    /// This is a child forked inside the body: the transaction and the
    /// connection are the parent's, left untouched. Holds the body's panic,
    /// if it panicked.
    Forked(Option<Box<dyn std::any::Any + Send>>),
    /// The connection was lost while COMMIT was in flight, and the call
    /// resolves such a loss: [`commit::settle`] asks the server. Boxed: a
    /// rare outcome that would otherwise make every attempt's result larger.
    CommitLost(Box<commit::CommitLost<T>>),
}

fn outermost<C, T, E, F>(pool: &Pool<C>, options: &Options, body: &mut F) -> Result<T, E>
where
    C: TxnConnection,
    E: From<Error>,
    F: FnMut(&mut C) -> Result<T, E>,
{
    single_writer::before_checkout(pool, options)?;
    let mut tries = Tries {
        attempts: 0,
        lost: 0,
        conflicts: 0,
        // Take the write lock at BEGIN (SQLite; see `upfront.rs`): a
        // function that cannot run twice always does.
        lock_upfront: options.retry == 0 && options.retry_conflicts == 0,
    };
    loop {
        tries.attempts += 1;
        // The events of this attempt (the body's own included) nest in its
        // span, made out of line when INFO is on at all.
        let span = if tracing::level_enabled!(tracing::Level::INFO) {
            attempt_span(options.name, tries.attempts)
        } else {
            tracing::Span::none()
        };
        let _entered = span.enter();
        // The clock is read only when the event is wanted.
        let waited = tracing::level_enabled!(tracing::Level::DEBUG)
            .then(checkout_clock)
            .flatten();
        // A `read_only` call goes to a replica when the pool has some. The
        // connection stays in `slot` (written once, not moved) and goes back
        // to the pool, or is closed, when the slot is emptied or dropped.
        let mut slot = None;
        let conn = pool.checkout_for(options, &mut slot)?;
        single_writer::after_checkout(pool, conn, options)?;
        if let Some(waited) = waited {
            checked_out_after(waited);
        }
        let upfront = tries.lock_upfront
            || (single_writer::one_writer::<C>() && upfront::needed(options.name));
        let outcome = match attempt(pool, conn, options, body, upfront) {
            // The common end, kept short: the connection goes back as `slot`
            // drops, before the caller gets the result.
            Attempt::Done(result) => return result,
            Attempt::Forked(panic) => {
                cold_path();
                // Neither returned to the parent's pool nor closed: both are
                // the parent's.
                std::mem::forget(slot.take());
                Attempt::Forked(panic)
            }
            Attempt::CommitLost(lost) => {
                cold_path();
                // Given back (closed) before the lost COMMIT is asked about
                // on another connection of the pool.
                drop(slot.take());
                commit::settle(pool, options, *lost)
            }
            outcome => {
                cold_path();
                // Given back (healthy, or closed if lost) before anything
                // else, before unwinding a panic in particular.
                drop(slot.take());
                outcome
            }
        };
        match after_attempt(pool, options, &mut tries, outcome) {
            Next::Again => continue,
            Next::Return(result) => return result,
        }
    }
}

/// The span of one attempt.
#[cold]
#[inline(never)]
fn attempt_span(function: &'static str, attempt: u32) -> tracing::Span {
    tracing::info_span!(target: "db_txn", "db_txn", function, attempt)
}

/// The time before checkout, if the checkout event is wanted.
#[cold]
#[inline(never)]
fn checkout_clock() -> Option<std::time::Instant> {
    tracing::enabled!(target: "db_txn", tracing::Level::DEBUG).then(std::time::Instant::now)
}

/// The checkout event, with the time it took.
#[cold]
#[inline(never)]
fn checked_out_after(waited: std::time::Instant) {
    tracing::debug!(
        target: "db_txn",
        wait_us = u64::try_from(waited.elapsed().as_micros()).unwrap_or(u64::MAX),
        "checkout"
    );
}

/// One BEGIN .. COMMIT/ROLLBACK on a checked-out connection.
fn attempt<C, T, E, F>(
    pool: &Pool<C>,
    conn: &mut PooledConnection<C>,
    options: &Options,
    body: &mut F,
    upfront: bool,
) -> Attempt<T, E>
where
    C: TxnConnection,
    E: From<Error>,
    F: FnMut(&mut C) -> Result<T, E>,
{
    let counters = pool.counters();
    let tracked = conn.tracked();
    let mut sql = match txn_sql::<C>(&tracked.server, options, upfront) {
        Ok(sql) => sql,
        Err(detail) => {
            cold_path();
            return Attempt::Done(Err(unsupported::<C>(options, detail).into()));
        }
    };
    let mut watch = commit::prepare(pool, tracked, options, &mut sql);
    // Fields borrowed apart: the body gets `conn` while `flags` is read.
    let flags: &Flags = &tracked.flags;
    flags.take_conflict();
    flags.take_busy();
    flags.set_read_only_txn(options.read_only);
    if let Err(e) = tracked.conn.begin_top_level(&sql.begin, tracked.direct) {
        cold_path();
        if let Some(kind) = flags.disconnect() {
            return Attempt::Lost { kind, source: e };
        }
        watch.begin_failed(pool);
        // The batch may have half-applied (session settings): do not reuse.
        flags.set_discard();
        return Attempt::Done(Err(step_error(options, Step::Begin, e).into()));
    }
    let settings = Settings {
        isolation: options.isolation,
        timeout: options.timeout,
    };
    let generation = pool::fork_current();
    let held = tracked.server.single_writer.map(|db| session::Held {
        db,
        writes: !options.read_only,
    });
    let entry = session::Entry::checked_out(
        pool.id(),
        &tracked.conn,
        options.name,
        settings,
        generation,
        held,
    );
    let outcome = {
        let _session = session::enter(&entry);
        catch_unwind(AssertUnwindSafe(|| body(&mut tracked.conn)))
    };
    if pool::fork_current() != generation {
        cold_path();
        // The body forked and this is the child: COMMIT or ROLLBACK here
        // would end the parent's transaction.
        return Attempt::Forked(outcome.err());
    }
    if !matches!(outcome, Ok(Ok(_))) {
        rolling_back(counters, outcome.is_err());
    }
    if !upfront && flags.take_busy() && flags.disconnect().is_none() {
        // The write lock was not free when the body first wrote: begin
        // again with it (only a deferred SQLite transaction gets here).
        cold_path();
        if Tm::rollback_transaction(&mut tracked.conn).is_err() {
            flags.set_discard();
        }
        if let Err(payload) = outcome {
            return Attempt::Panicked(payload);
        }
        return Attempt::Upgrade;
    }
    match outcome {
        Ok(Ok(value)) => {
            let quiet = flags.stamp.quiet_ticks() > 0;
            if quiet && flags.disconnect().is_none() && tracked.fd.is_some_and(pool::hung_up) {
                // The server closed the connection before COMMIT was sent
                // (a KILL, a restart, an idle timeout): nothing can have
                // committed, so this is a loss before COMMIT, not an unknown
                // outcome. One poll(2) without waiting, made only when the
                // body was quiet for a watchdog period or more since its last
                // statement (a body that finished its statements just now
                // leaves the server no time to close on it, and a system
                // call on every COMMIT costs ~0.3 µs).
                cold_path();
                flags.set_disconnect(Disconnect::Closed, None);
                pool.signals_disconnect();
            }
            if let Some(kind) = flags.disconnect() {
                cold_path();
                // The transaction is gone (the body may have swallowed the
                // error that revealed it).
                return Attempt::Lost {
                    kind,
                    source: flags.lost_error(),
                };
            }
            match commit::commit(&mut tracked.conn, tracked.direct, &mut watch) {
                Ok(()) => {
                    tracked.ok = true;
                    reset_session(&mut tracked.conn, flags, &sql);
                    watch.committed(pool, &mut tracked.conn);
                    if !options.read_only {
                        // Read-your-writes: where the commit is (pools with replicas only).
                        pool.committed(tracked);
                    }
                    Attempt::Done(Ok(value))
                }
                Err(Failure::Before(e)) => {
                    cold_path();
                    commit::failed_before(options, flags, &mut tracked.conn, e)
                }
                Err(Failure::Commit(_))
                    if (options.read_only || watch.wrote_nothing())
                        && flags.disconnect().is_some()
                        && flags.disconnect() != Some(Disconnect::ReadOnly) =>
                {
                    // A read-only transaction (or one that wrote nothing) has
                    // nothing to commit: what it read is as good as it was.
                    // Only the connection is lost.
                    cold_path();
                    tracing::debug!(
                        target: "db_txn",
                        "connection lost at the COMMIT of a read-only transaction: result kept"
                    );
                    Attempt::Done(Ok(value))
                }
                Err(Failure::Commit(e)) => {
                    cold_path();
                    commit_failed(counters, options, tracked, &sql, e, (value, watch))
                }
            }
        }
        Ok(Err(user_error)) => body_failed(&mut tracked.conn, flags, &sql, user_error),
        Err(payload) => body_panicked(&mut tracked.conn, flags, &sql, payload),
    }
}

#[cold]
#[inline(never)]
fn commit_failed<C: TxnConnection, T, E: From<Error>>(
    counters: &Counters,
    options: &Options,
    tracked: &mut Tracked<C>,
    sql: &TxnSql,
    e: diesel::result::Error,
    (value, watch): (T, commit::Watch),
) -> Attempt<T, E> {
    let (commit_error, meaning) = commit_failure::meaning(C::BACKEND, &tracked.flags, e);
    match meaning {
        Meaning::ReadOnly => Attempt::Lost {
            kind: Disconnect::ReadOnly,
            source: commit_error,
        },
        Meaning::Lost(kind) => {
            let watched = watch.lost(tracked, kind, commit_error);
            match commit_failure::resolvable(counters, options, watched) {
                Ok(lost) => Attempt::CommitLost(Box::new(commit::CommitLost { value, lost })),
                Err(unknown) => Attempt::Done(Err(unknown.into())),
            }
        }
        Meaning::Definite { conflict } => {
            drop(value);
            let flags = tracked.flags.clone();
            reset_session(&mut tracked.conn, &flags, sql);
            match commit_failure::definite(&flags, conflict, options, commit_error) {
                (true, result) => Attempt::Conflict(result),
                (false, result) => Attempt::Done(result),
            }
        }
    }
}

/// Undo session settings made for the transaction; a connection that cannot
/// be reset is not reused.
#[inline(always)]
fn reset_session<C: TxnConnection>(conn: &mut C, flags: &Flags, sql: &TxnSql) {
    if let Some(after) = sql.after {
        if conn.batch_execute(after).is_err() {
            flags.set_discard();
        }
    }
}

pub(crate) fn step_error(options: &Options, step: Step, source: diesel::result::Error) -> Error {
    Error::Transaction {
        function: options.name,
        step,
        source,
    }
}

pub(super) fn unsupported<C: TxnConnection>(options: &Options, detail: &'static str) -> Error {
    Error::Unsupported {
        function: options.name,
        backend: C::BACKEND,
        detail,
    }
}
