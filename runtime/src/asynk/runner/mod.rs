//! The async transaction runner: the sync runner's rule (`runner/mod.rs`)
//! on futures.
//!
//! The outermost call checks a connection out, BEGINs, runs the body,
//! COMMITs on `Ok` and ROLLBACKs on `Err` or panic; when the connection
//! turns out to be gone *before COMMIT was sent*, the connection is
//! discarded and the body runs again on a fresh one, up to `retry` times. A
//! connection lost *during* COMMIT gives [`Error::CommitUnknown`] and is
//! never retried, unless the call resolves it (`resolve_commit`:
//! `commit.rs`). Calls that join a lent connection run in a SAVEPOINT and
//! never retry on their own.
//!
//! What only futures add: the call's future may be dropped at any await
//! point. The checked-out connection ([`AsyncPooledConnection`]) decides on
//! drop what the connection owes (see `pool/pooled.rs`); the runner only
//! marks COMMIT in flight and the session reset still owed. A statement of
//! the body whose future the body itself dropped (under its own timeout, in
//! a `select!`) makes the connection unusable: a body that then returns
//! `Ok` is not committed but counted as a loss before COMMIT (and run
//! again), one that returns `Err` or panics is rolled back by closing the
//! connection.

mod commit;
mod nested;
mod unwind;

use std::panic::resume_unwind;
use std::time::Instant;

use diesel_async::{AnsiTransactionManager, TransactionManager};
use tracing::Instrument;

use super::pool::slot::Slot;
use super::pool::{AsyncPool, AsyncPooledConnection};
use super::{registry, session};
use crate::backend::{AsyncTxnConnection, Dialect};
use crate::classify::Disconnect;
use crate::error::Step;
use crate::pool::flags::Flags;
use crate::pool::socket;
use crate::runner::commit_failure::{self, Meaning};
use crate::runner::{after_error, conflict, lost, rolling_back, step_error, AfterError};
use crate::session::Settings;
use crate::stats::Counters;
use crate::{Error, Options};
use commit::Failure;
use unwind::CatchUnwind;

type Tm = AnsiTransactionManager;

/// Which pool an async call uses.
pub enum AsyncTarget<'a, C: AsyncTxnConnection> {
    /// The pool [`install_async`](crate::install_async)ed for `C`.
    Default,
    /// `#[db_txn(pool = ...)]`.
    Explicit(&'a AsyncPool<C>),
}

/// Run a body in a transaction as `options` say: `bodies` gives the body of
/// each attempt (a clone of it, or the one body of a call that runs once).
pub(crate) async fn run<C, T, E, F>(
    target: AsyncTarget<'_, C>,
    options: Options,
    bodies: impl FnMut() -> Option<F>,
) -> Result<T, E>
where
    C: AsyncTxnConnection,
    E: From<Error>,
    F: AsyncFnOnce(&mut C) -> Result<T, E>,
{
    let mut bodies = bodies;
    let installed;
    let pool = match target {
        AsyncTarget::Explicit(pool) => Some(pool),
        AsyncTarget::Default => {
            installed = registry::installed_async::<C>();
            installed.as_ref()
        }
    };
    if !options.requires_new {
        match session::lookup::<C>(pool.map(AsyncPool::id)) {
            session::Lookup::Free => {}
            session::Lookup::Busy { holder } => {
                return Err(Error::ConnectionBorrowed {
                    function: options.name,
                    holder,
                }
                .into())
            }
            session::Lookup::Lent(lent) => {
                return nested::join(lent, &options, next(&mut bodies)).await
            }
        }
    }
    match pool {
        Some(pool) => outermost(pool, &options, bodies).await,
        None => Err(Error::NoPool {
            connection: std::any::type_name::<C>(),
            function: options.name,
        }
        .into()),
    }
}

/// How one attempt of the outermost call ended.
enum Attempt<T, E> {
    /// Return this to the caller.
    Done(Result<T, E>),
    /// The connection was lost before COMMIT was sent: nothing committed.
    Lost {
        kind: Disconnect,
        source: diesel::result::Error,
    },
    /// A deadlock or serialization failure: rolled back, may be retried.
    Conflict(Result<T, E>),
    /// The body panicked; the transaction was rolled back.
    Panicked(Box<dyn std::any::Any + Send>),
    /// The connection was lost while COMMIT was in flight, and the call
    /// resolves such a loss: [`commit::settle`] asks the server.
    CommitLost { value: T, lost: commit::Lost },
}

/// After an attempt: return, or run the body again (after a pause).
enum Next<T, E> {
    Return(Result<T, E>),
    Again(Option<std::time::Duration>),
}

/// The body of the next attempt.
fn next<F>(bodies: &mut impl FnMut() -> Option<F>) -> F {
    match bodies() {
        Some(body) => body,
        // Unreachable: a body given once comes with both retries at 0.
        None => unreachable!("db_txn: a retry = 0 body ran twice"),
    }
}

async fn outermost<C, T, E, F>(
    pool: &AsyncPool<C>,
    options: &Options,
    mut bodies: impl FnMut() -> Option<F>,
) -> Result<T, E>
where
    C: AsyncTxnConnection,
    E: From<Error>,
    F: AsyncFnOnce(&mut C) -> Result<T, E>,
{
    let counters = pool.counters();
    let (mut attempts, mut lost_retries, mut conflict_retries) = (0u32, 0, 0);
    loop {
        attempts += 1;
        // The events of this attempt (the body's own included) nest in its span.
        let span = tracing::info_span!(
            target: "db_txn",
            "db_txn",
            function = options.name,
            attempt = attempts
        );
        let next = async {
            let waited =
                tracing::enabled!(target: "db_txn", tracing::Level::DEBUG).then(Instant::now);
            // A `read_only` call goes to a replica when the pool has some
            // (boxed: every other call's future stays as it was).
            let checked_out = if pool.routes_to_replica(options) {
                Box::pin(pool.checkout_read(options)).await
            } else {
                pool.checkout(Some(options.name)).await
            };
            let mut conn = match checked_out {
                Ok(conn) => conn,
                Err(e) => return Next::Return(Err(e.into())),
            };
            if let Some(waited) = waited {
                tracing::debug!(
                    target: "db_txn",
                    wait_us = u64::try_from(waited.elapsed().as_micros()).unwrap_or(u64::MAX),
                    "checkout"
                );
            }
            let outcome = attempt(pool, &mut conn, options, next(&mut bodies)).await;
            // Given back (healthy, or closed if lost) before anything else:
            // before unwinding a panic, and before a lost COMMIT is asked
            // about on another connection of the pool.
            drop(conn);
            match commit::settle(pool, options, outcome).await {
                Attempt::Done(result) => Next::Return(result),
                Attempt::Panicked(payload) => resume_unwind(payload),
                Attempt::Lost { kind, source } => {
                    match lost(options, counters, &mut lost_retries, attempts, kind, source) {
                        Ok(()) => {
                            pool.lost_before_retry(kind);
                            Next::Again(None)
                        }
                        Err(e) => Next::Return(Err(e.into())),
                    }
                }
                Attempt::Conflict(result) => {
                    match conflict(options, counters, &mut conflict_retries) {
                        Some(pause) => Next::Again(Some(pause)),
                        None => Next::Return(result),
                    }
                }
                // Turned into one of the above by `commit::settle`.
                Attempt::CommitLost { .. } => unreachable!("a lost COMMIT is settled first"),
            }
        }
        .instrument(span)
        .await;
        match next {
            Next::Return(result) => return result,
            Next::Again(None) => {}
            Next::Again(Some(pause)) => tokio::time::sleep(pause).await,
        }
    }
}

/// One BEGIN .. COMMIT/ROLLBACK on a checked-out connection.
async fn attempt<C, T, E, F>(
    pool: &AsyncPool<C>,
    conn: &mut AsyncPooledConnection<C>,
    options: &Options,
    body: F,
) -> Attempt<T, E>
where
    C: AsyncTxnConnection,
    E: From<Error>,
    F: AsyncFnOnce(&mut C) -> Result<T, E>,
{
    let counters = pool.counters();
    let slot = conn.slot();
    let flags = slot.tracked.flags.clone();
    let mut sql = match <C::Dialect as Dialect>::txn_sql(&slot.tracked.server, options, true) {
        Ok(sql) => sql,
        Err(detail) => return Attempt::Done(Err(unsupported::<C>(options, detail).into())),
    };
    let mut watch = commit::prepare(pool, slot, options, &mut sql).await;
    flags.take_conflict();
    // A write refused inside a `read_only` transaction is the body's own error,
    // not a role change.
    flags.set_read_only_txn(options.read_only);
    if let Err(e) = Tm::begin_transaction_sql(&mut slot.tracked.conn, &sql.begin).await {
        if let Some(kind) = flags.disconnect() {
            return Attempt::Lost { kind, source: e };
        }
        watch.begin_failed_in(pool.resolution());
        // The batch may have half-applied (session settings): do not reuse.
        flags.set_discard();
        return Attempt::Done(Err(step_error(options, Step::Begin, e).into()));
    }
    slot.pending_reset = sql.after;
    let settings = Settings {
        isolation: options.isolation,
        timeout: options.timeout,
    };
    let addr = &slot.tracked.conn as *const C as usize;
    let outcome = session::enter::<C, _>(
        pool.id(),
        addr,
        options.name,
        settings,
        CatchUnwind::new(body(&mut slot.tracked.conn)),
    )
    .await;
    if !matches!(outcome, Ok(Ok(_))) {
        rolling_back(counters, outcome.is_err());
    }
    if slot.mid_statement() {
        // The body dropped a statement's future before it finished: nothing
        // more can be sent on this connection, which closes (and so rolls
        // back) when it is released.
        return abandoned_by_the_body(pool, &flags, outcome);
    }
    match outcome {
        Ok(Ok(value)) => {
            if flags.disconnect().is_none() && slot.tracked.fd.is_some_and(socket::hung_up) {
                // The server closed the connection before COMMIT was sent:
                // nothing can have committed. One poll(2) without waiting.
                flags.set_disconnect(Disconnect::Closed, None);
                pool.signals_disconnect();
            }
            if let Some(kind) = flags.disconnect() {
                // The transaction is gone (the body may have swallowed the
                // error that revealed it).
                return Attempt::Lost {
                    kind,
                    source: flags.lost_error(),
                };
            }
            if slot.depth() != Ok(Some(1)) {
                // A savepoint is still open: a joined call's future outlived
                // the `lend_async` that lent the connection. COMMIT would only
                // release that savepoint; roll everything back instead.
                return left_nested(options, slot, &flags).await;
            }
            match commit::commit(slot, &mut watch).await {
                Ok(()) => {
                    slot.tracked.ok = true;
                    reset_session(slot, &flags).await;
                    commit::committed(pool, slot, &watch).await;
                    if !options.read_only && pool.has_replicas() {
                        // Read-your-writes: where the commit is (boxed, as
                        // the replica checkout).
                        Box::pin(pool.raise_floor(slot)).await;
                    }
                    Attempt::Done(Ok(value))
                }
                Err(Failure::Before(e)) => commit::failed_before(options, slot, &flags, e).await,
                Err(Failure::Commit(_))
                    if (options.read_only || watch.wrote_nothing())
                        && flags.disconnect().is_some() =>
                {
                    // A read-only transaction (or one that wrote nothing)
                    // has nothing to commit: what it read is as good as it
                    // was. Only the connection is lost.
                    tracing::debug!(
                        target: "db_txn",
                        "connection lost at the COMMIT of a read-only transaction: result kept"
                    );
                    Attempt::Done(Ok(value))
                }
                Err(Failure::Commit(e)) => {
                    commit_failed(counters, options, slot, &flags, e, (value, watch)).await
                }
            }
        }
        Ok(Err(user_error)) => {
            let rolled_back = Tm::rollback_transaction(&mut slot.tracked.conn)
                .await
                .is_ok();
            match after_error(&flags, rolled_back, user_error) {
                AfterError::Lost { kind, source } => Attempt::Lost { kind, source },
                AfterError::Discarded(user_error) => Attempt::Done(Err(user_error)),
                AfterError::RolledBack(user_error) => {
                    reset_session(slot, &flags).await;
                    if flags.take_conflict() {
                        Attempt::Conflict(Err(user_error))
                    } else {
                        Attempt::Done(Err(user_error))
                    }
                }
            }
        }
        Err(payload) => {
            if Tm::rollback_transaction(&mut slot.tracked.conn)
                .await
                .is_err()
            {
                flags.set_discard();
            } else {
                reset_session(slot, &flags).await;
            }
            Attempt::Panicked(payload)
        }
    }
}

/// The body returned with the transaction still nested.
async fn left_nested<C: AsyncTxnConnection, T, E: From<Error>>(
    options: &Options,
    slot: &mut Slot<C>,
    flags: &Flags,
) -> Attempt<T, E> {
    while let Ok(Some(_)) = slot.depth() {
        if Tm::rollback_transaction(&mut slot.tracked.conn)
            .await
            .is_err()
        {
            flags.set_discard();
            break;
        }
    }
    reset_session(slot, flags).await;
    let source = diesel::result::Error::QueryBuilderError(
        "the body returned while a call that joined its transaction was still open (its \
         future outlived the `lend_async` that lent the connection): rolled back instead of \
         committed"
            .into(),
    );
    Attempt::Done(Err(step_error(options, Step::Commit, source).into()))
}

/// The body left a statement in flight (it dropped the statement's future).
fn abandoned_by_the_body<C, T, E>(
    pool: &AsyncPool<C>,
    flags: &Flags,
    outcome: Result<Result<T, E>, Box<dyn std::any::Any + Send>>,
) -> Attempt<T, E>
where
    C: AsyncTxnConnection,
{
    flags.set_discard();
    match outcome {
        Ok(Ok(_)) => {
            let source = diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::ClosedConnection,
                Box::new(
                    "a statement's future was dropped before the statement finished: the \
                     connection cannot be used again, so COMMIT was not sent"
                        .to_string(),
                ),
            );
            flags.set_disconnect(Disconnect::Closed, Some(&source));
            pool.signals_disconnect();
            Attempt::Lost {
                kind: Disconnect::Closed,
                source,
            }
        }
        Ok(Err(user_error)) => Attempt::Done(Err(user_error)),
        Err(payload) => Attempt::Panicked(payload),
    }
}

async fn commit_failed<C: AsyncTxnConnection, T, E: From<Error>>(
    counters: &Counters,
    options: &Options,
    slot: &mut Slot<C>,
    flags: &Flags,
    e: diesel::result::Error,
    (value, watch): (T, commit::Watch),
) -> Attempt<T, E> {
    let (commit_error, meaning) = commit_failure::meaning(C::BACKEND, flags, e);
    match meaning {
        Meaning::ReadOnly => Attempt::Lost {
            kind: Disconnect::ReadOnly,
            source: commit_error,
        },
        Meaning::Lost(kind) => {
            let watched = watch.lost(&slot.tracked, kind, commit_error);
            match commit_failure::resolvable(counters, options, watched) {
                Ok(lost) => Attempt::CommitLost { value, lost },
                Err(unknown) => Attempt::Done(Err(unknown.into())),
            }
        }
        Meaning::Definite { conflict } => {
            drop(value);
            reset_session(slot, flags).await;
            match commit_failure::definite(flags, conflict, options, commit_error) {
                (true, result) => Attempt::Conflict(result),
                (false, result) => Attempt::Done(result),
            }
        }
    }
}

/// Undo session settings made for the transaction; a connection that cannot
/// be reset is not reused.
async fn reset_session<C: AsyncTxnConnection>(slot: &mut Slot<C>, flags: &Flags) {
    if let Some(after) = slot.pending_reset {
        if slot.tracked.conn.batch_execute(after).await.is_err() {
            flags.set_discard();
        }
        slot.pending_reset = None;
    }
}

fn unsupported<C: AsyncTxnConnection>(options: &Options, detail: &'static str) -> Error {
    Error::Unsupported {
        function: options.name,
        backend: C::BACKEND,
        detail,
    }
}
