//! Resolving a COMMIT lost with its connection (`resolve_commit`) on an
//! async call: the async runner's I/O, the twin of `runner/commit.rs`. What
//! to do with each answer is decided in `lost_commit.rs`, shared with the
//! sync runner; the SQL is each backend's `resolve.rs`.
//!
//! A call whose future is dropped while its lost COMMIT is being resolved
//! stops asking: a question in flight is dropped with its connection
//! (closed, its statement cancelled, as any statement whose future is
//! dropped), one between questions holds none. Nobody learns the outcome,
//! so it counts as a commit-unknown, logged at ERROR.

use std::time::Instant;

use diesel_async::{AnsiTransactionManager as Tm, TransactionManager};

use super::super::pool::pooler;
use super::super::pool::slot::Slot;
use super::super::pool::{AsyncPool, AsyncPooledConnection};
use super::Attempt;
use crate::backend::{AsyncTxnConnection, Dialect, Outcome, TxnSql};
use crate::lost_commit::{self, Asking, Next, Plan, Verdict};
use crate::pool::flags::Flags;
use crate::stats::Counters;
use crate::{Error, Options};

pub(super) use crate::lost_commit::{Failure, Lost, Watch};

/// Before BEGIN: get ready to resolve this transaction's COMMIT. With a
/// marker, `sql.begin` gets its insert (one batch, no extra round trip).
pub(super) async fn prepare<C: AsyncTxnConnection>(
    pool: &AsyncPool<C>,
    slot: &mut Slot<C>,
    options: &Options,
    sql: &mut TxnSql,
) -> Watch {
    match lost_commit::plan(<C::Dialect as Dialect>::RESOLVE, pool.resolution(), options) {
        Plan::Off => Watch::default(),
        Plan::Xid => Watch::xid(),
        Plan::Marker if markers_ready(pool, slot).await => Watch::marker::<C::Dialect>(sql),
        Plan::Marker => Watch::default(),
    }
}

/// The marker table is there, created now if need be (outside any
/// transaction: DDL commits on MySQL).
async fn markers_ready<C: AsyncTxnConnection>(pool: &AsyncPool<C>, slot: &mut Slot<C>) -> bool {
    let resolution = pool.resolution();
    if let Some(known) = lost_commit::table_known(resolution) {
        return known;
    }
    let created = slot.tracked.conn.create_markers().await;
    let lost = slot.tracked.flags.disconnect().is_some();
    lost_commit::table_created(resolution, created, lost)
}

/// COMMIT, after reading the transaction id if the scheme needs it.
pub(super) async fn commit<C: AsyncTxnConnection>(
    slot: &mut Slot<C>,
    watch: &mut Watch,
) -> Result<(), Failure> {
    if watch.wants_xid() {
        let token = slot
            .tracked
            .conn
            .before_commit()
            .await
            .map_err(Failure::Before)?;
        watch.read_xid(token);
    }
    slot.committing = true;
    let committed = Tm::commit_transaction(&mut slot.tracked.conn).await;
    slot.committing = false;
    committed.map_err(Failure::Commit)
}

/// After a successful COMMIT: deletes a full batch of markers, if this one
/// filled it (a failure only leaves them to the stale clean-up).
pub(super) async fn committed<C: AsyncTxnConnection>(
    pool: &AsyncPool<C>,
    slot: &mut Slot<C>,
    watch: &Watch,
) {
    if let Some(batch) = watch.forget_now(pool.resolution()) {
        if let Err(e) = slot.tracked.conn.forget_markers(batch).await {
            tracing::debug!(target: "db_txn", error = %e, "deleting commit markers failed");
        }
    }
}

/// Reading the transaction id failed, before COMMIT: nothing committed. A
/// lost connection runs the body again; any other error (the transaction
/// is aborted on the server then) rolls back and is the call's error.
pub(super) async fn failed_before<C: AsyncTxnConnection, T, E: From<Error>>(
    options: &Options,
    slot: &mut Slot<C>,
    flags: &Flags,
    e: diesel::result::Error,
) -> Attempt<T, E> {
    if let Some(kind) = flags.disconnect() {
        return Attempt::Lost { kind, source: e };
    }
    if Tm::rollback_transaction(&mut slot.tracked.conn)
        .await
        .is_err()
    {
        flags.set_discard();
    } else {
        super::reset_session(slot, flags).await;
    }
    let step = crate::error::Step::Commit;
    Attempt::Done(Err(crate::runner::step_error(options, step, e).into()))
}

/// Turns a lost COMMIT into what the caller gets; other attempts pass
/// through.
pub(super) async fn settle<C, T, E>(
    pool: &AsyncPool<C>,
    options: &Options,
    attempt: Attempt<T, E>,
) -> Attempt<T, E>
where
    C: AsyncTxnConnection,
    E: From<Error>,
{
    let Attempt::CommitLost { value, lost } = attempt else {
        return attempt;
    };
    let started = Instant::now();
    let counters = pool.counters();
    let dropped = Unsettled(Some(counters));
    let found = resolve(pool, options, &lost).await;
    dropped.settled();
    match lost_commit::verdict(counters, pool.resolution(), options, lost, found, started) {
        Verdict::Committed => Attempt::Done(Ok(value)),
        Verdict::Aborted { kind, source } => Attempt::Lost { kind, source },
        Verdict::Unknown(e) => Attempt::Done(Err(e.into())),
    }
}

/// A resolution under way: if the call's future is dropped before it ends,
/// the outcome stays unknown, and is counted so.
struct Unsettled<'a>(Option<&'a Counters>);

impl Unsettled<'_> {
    fn settled(mut self) {
        self.0 = None;
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if let Some(counters) = self.0 {
            Counters::bump(&counters.commit_unknowns);
            tracing::error!(
                target: "db_txn",
                outcome = "unknown",
                reason = "the call was dropped",
                "call dropped while the outcome of its lost COMMIT was being found: \
                 the outcome is unknown"
            );
        }
    }
}

/// Asks fresh connections of the pool until the server tells, or the
/// timeout runs out (`InProgress` or `Unknown` then). Bounded by the
/// timeout: a question still unanswered then is dropped (its connection
/// closed, its statement cancelled).
async fn resolve<C: AsyncTxnConnection>(
    pool: &AsyncPool<C>,
    options: &Options,
    lost: &Lost,
) -> Outcome {
    let mut asking = Asking::new(pool.resolution().timeout);
    while let Some(left) = asking.left() {
        if let Ok(mut conn) = pool.checkout_within(Some(options.name), left).await {
            let Some(left) = asking.left() else { break };
            match tokio::time::timeout(left, ask(&mut conn, &mut asking, lost)).await {
                Ok(Some(found)) => return found,
                Ok(None) => {}
                Err(_) => asking.unanswered(),
            }
        }
        tokio::time::sleep(asking.pause()).await;
    }
    asking.outcome()
}

/// One round on `conn`: the question, and ending the lost session if the
/// answer says it is still open. `Some` when the resolution is over.
async fn ask<C: AsyncTxnConnection>(
    conn: &mut AsyncPooledConnection<C>,
    asking: &mut Asking,
    lost: &Lost,
) -> Option<Outcome> {
    let slot = conn.slot();
    let token = &lost.token;
    let pooled = slot.tracked.server.behind_pooler;
    let answer = pooler::own_read(&mut slot.tracked.conn, pooled, async |c| {
        c.commit_outcome(token).await
    })
    .await;
    match asking.answered(answer, slot.tracked.flags.disconnect().is_some()) {
        Next::Answered(found) => {
            slot.tracked.ok = true;
            Some(found)
        }
        Next::Refused(found) => Some(found),
        Next::EndSession => {
            let session = &lost.session;
            let ended = pooler::own_read(&mut slot.tracked.conn, pooled, async |c| {
                c.end_lost_session(token, session).await
            })
            .await;
            asking.tried_to_end(ended, lost);
            None
        }
        Next::Again => None,
    }
}
