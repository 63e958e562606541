//! Resolving a COMMIT lost with its connection (issue 10), when a function
//! or its pool asks for it (`resolve_commit`): the sync runner's I/O. What
//! to do with each answer is decided in `lost_commit.rs`, shared with the
//! async runner; the SQL is each backend's `resolve.rs`.

use std::thread;
use std::time::Instant;

use diesel::connection::{AnsiTransactionManager as Tm, TransactionManager};

use super::Attempt;
use crate::backend::{Dialect, Outcome, TxnConnection, TxnSql};
use crate::lost_commit::{self, Asking, Next, Plan, Verdict};
use crate::pool::flags::Flags;
use crate::pool::tracked::Tracked;
use crate::{Error, Options, Pool};

pub(super) use crate::lost_commit::{Failure, Lost, Watch};

impl Watch {
    /// [`Watch::begin_failed_in`] this pool.
    pub(super) fn begin_failed<C: TxnConnection>(&self, pool: &Pool<C>) {
        self.begin_failed_in(pool.resolution());
    }

    /// After a successful COMMIT: deletes a full batch of markers, if this
    /// one filled it (a failure only leaves them to the stale clean-up).
    #[inline(always)]
    pub(super) fn committed<C: TxnConnection>(&self, pool: &Pool<C>, conn: &mut C) {
        if self.has_token() {
            self.forget_markers(pool, conn);
        }
    }

    #[inline(never)]
    fn forget_markers<C: TxnConnection>(&self, pool: &Pool<C>, conn: &mut C) {
        if let Some(batch) = self.forget_now(pool.resolution()) {
            if let Err(e) = conn.forget_markers(&batch) {
                tracing::debug!(target: "db_txn", error = %e, "deleting commit markers failed");
            }
        }
    }
}

/// Before BEGIN: get ready to resolve this transaction's COMMIT. With a
/// marker, `sql.begin` gets its insert (one batch, no extra round trip).
#[inline(always)]
pub(super) fn prepare<C: TxnConnection>(
    pool: &Pool<C>,
    tracked: &mut Tracked<C>,
    options: &Options,
    sql: &mut TxnSql,
) -> Watch {
    match lost_commit::plan(<C::Dialect as Dialect>::RESOLVE, pool.resolution(), options) {
        Plan::Off => Watch::default(),
        plan => prepare_token(pool, tracked, sql, plan),
    }
}

#[inline(never)]
fn prepare_token<C: TxnConnection>(
    pool: &Pool<C>,
    tracked: &mut Tracked<C>,
    sql: &mut TxnSql,
    plan: Plan,
) -> Watch {
    match plan {
        Plan::Off => Watch::default(),
        Plan::Xid => Watch::xid(),
        Plan::Marker if markers_ready(pool, &mut tracked.conn, &tracked.flags) => {
            Watch::marker::<C::Dialect>(sql)
        }
        Plan::Marker => Watch::default(),
    }
}

/// The marker table is there, created now if need be (outside any
/// transaction: DDL commits on MySQL).
fn markers_ready<C: TxnConnection>(pool: &Pool<C>, conn: &mut C, flags: &Flags) -> bool {
    let resolution = pool.resolution();
    lost_commit::table_known(resolution).unwrap_or_else(|| {
        let created = conn.create_markers();
        lost_commit::table_created(resolution, created, flags.disconnect().is_some())
    })
}

/// COMMIT, after reading the transaction id if the scheme needs it;
/// `direct` as [`Driver::commit_top_level`](crate::backend::Driver::commit_top_level)'s.
#[inline(always)]
pub(super) fn commit<C: TxnConnection>(
    conn: &mut C,
    direct: bool,
    watch: &mut Watch,
) -> Result<(), Failure> {
    if watch.wants_xid() {
        let token = conn.before_commit().map_err(Failure::Before)?;
        watch.read_xid(token);
    }
    conn.commit_top_level(direct).map_err(Failure::Commit)
}

/// Reading the transaction id failed, before COMMIT: nothing committed. A
/// lost connection runs the body again; any other error (the transaction
/// is aborted on the server then) rolls back and is the call's error.
pub(super) fn failed_before<C: TxnConnection, T, E: From<Error>>(
    options: &Options,
    flags: &Flags,
    conn: &mut C,
    e: diesel::result::Error,
) -> Attempt<T, E> {
    if let Some(kind) = flags.disconnect() {
        return Attempt::Lost { kind, source: e };
    }
    if Tm::rollback_transaction(conn).is_err() {
        flags.set_discard();
    }
    Attempt::Done(Err(super::step_error(
        options,
        crate::error::Step::Commit,
        e,
    )
    .into()))
}

/// A COMMIT lost with its connection, with the body's value.
pub(super) struct CommitLost<T> {
    pub value: T,
    pub lost: Lost,
}

/// Turns a lost COMMIT into what the caller gets: the body's value, a
/// retry, or `CommitUnknown`.
pub(super) fn settle<C, T, E>(
    pool: &Pool<C>,
    options: &Options,
    CommitLost { value, lost }: CommitLost<T>,
) -> Attempt<T, E>
where
    C: TxnConnection,
    E: From<Error>,
{
    let started = Instant::now();
    let found = resolve(pool, options, &lost);
    let resolution = pool.resolution();
    match lost_commit::verdict(pool.counters(), resolution, options, lost, found, started) {
        Verdict::Committed => Attempt::Done(Ok(value)),
        Verdict::Aborted { kind, source } => Attempt::Lost { kind, source },
        Verdict::Unknown(e) => Attempt::Done(Err(e.into())),
    }
}

/// Asks fresh connections of the pool until the server tells, or the
/// timeout runs out (`InProgress` or `Unknown` then).
fn resolve<C: TxnConnection>(pool: &Pool<C>, options: &Options, lost: &Lost) -> Outcome {
    let mut asking = Asking::new(pool.resolution().timeout);
    while let Some(left) = asking.left() {
        if let Ok(mut conn) = pool.checkout_within(Some(options.name), left) {
            let tracked = conn.tracked();
            let answer = tracked.conn.commit_outcome(&lost.token);
            match asking.answered(answer, tracked.flags.disconnect().is_some()) {
                Next::Answered(found) => {
                    tracked.ok = true;
                    return found;
                }
                Next::Refused(found) => return found,
                Next::EndSession => {
                    let ended = tracked.conn.end_lost_session(&lost.token, &lost.session);
                    asking.tried_to_end(ended, lost);
                }
                Next::Again => {}
            }
        }
        thread::sleep(asking.pause());
    }
    asking.outcome()
}
