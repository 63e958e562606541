//! The handle of a checked-out async connection, and what happens when it is
//! dropped: the one place that decides whether a connection goes back to the
//! pool, so a future dropped at any await point never returns a connection
//! that owes anything.
//!
//! * Nothing owed (no statement in flight, no transaction, no pending
//!   session reset): back to the pool.
//! * A statement in flight (its future was dropped before it finished):
//!   detached from the pool at once and closed, and its server-side
//!   statement cancelled (PostgreSQL's cancel request, MariaDB/MySQL `KILL
//!   QUERY`) in a spawned task, or on a thread of its own when no runtime
//!   runs it (its runtime shutting down); the server rolls the transaction
//!   back. A COMMIT in flight is not cancelled, and is
//!   counted and logged as commit-unknown.
//! * In a transaction but idle (dropped while the body awaited something
//!   else): rolled back, and the session reset, in a spawned task, then
//!   returned; closed instead when that fails or takes longer than 5 s, or
//!   when there is no runtime to spawn on (its runtime shutting down).

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use deadpool::managed::Object;
use diesel_async::TransactionManager;

use super::manager::Manager;
use super::slot::Slot;
use crate::backend::async_driver::Canceller;
use crate::backend::AsyncTxnConnection;
use crate::stats::Counters;

/// How long a background ROLLBACK of an abandoned transaction may take.
const CLEANUP_LIMIT: Duration = Duration::from_secs(5);
/// How long a cancel request may take.
const CANCEL_LIMIT: Duration = Duration::from_secs(5);

/// A connection checked out of an [`AsyncPool`](crate::AsyncPool);
/// dereferences to `C` and goes back to the pool when dropped, unless it
/// owes something (see [the crate docs](crate#cancellation)).
pub struct AsyncPooledConnection<C: AsyncTxnConnection> {
    obj: Option<Object<Manager<C>>>,
    /// The fork generation it was checked out in.
    generation: u64,
}

impl<C: AsyncTxnConnection> AsyncPooledConnection<C> {
    pub(super) fn new(obj: Object<Manager<C>>) -> Self {
        AsyncPooledConnection {
            obj: Some(obj),
            generation: crate::pool::fork_generation(),
        }
    }

    pub(crate) fn slot(&mut self) -> &mut Slot<C> {
        match &mut self.obj {
            Some(obj) => obj,
            // Only `drop` takes it.
            None => unreachable!("db_txn: a released connection was used"),
        }
    }

    fn slot_ref(&self) -> &Slot<C> {
        match &self.obj {
            Some(obj) => obj,
            None => unreachable!("db_txn: a released connection was used"),
        }
    }
}

impl<C: AsyncTxnConnection> Deref for AsyncPooledConnection<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.slot_ref().tracked.conn
    }
}

impl<C: AsyncTxnConnection> DerefMut for AsyncPooledConnection<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.slot().tracked.conn
    }
}

impl<C: AsyncTxnConnection> Drop for AsyncPooledConnection<C> {
    fn drop(&mut self) {
        let Some(obj) = self.obj.take() else { return };
        if self.generation != crate::pool::fork_generation() {
            // Held across fork() and dropped in the child: the connection and
            // the pool's state are the parent's.
            std::mem::forget(obj);
            return;
        }
        release(obj);
    }
}

fn release<C: AsyncTxnConnection>(mut obj: Object<Manager<C>>) {
    let slot: &mut Slot<C> = &mut obj;
    slot.tracked.flags.stamp.checked_in();
    if slot.mid_statement() {
        return abandon_statement(obj);
    }
    if slot.clean() {
        slot.tracked.returned();
        return drop(obj);
    }
    if slot.tracked.flags.unusable() || slot.depth().is_err() {
        tracing::info!(
            target: "db_txn",
            cause = slot.tracked.flags.disconnect().map_or("unusable after a failed rollback or reset".into(), |d| d.to_string()),
            "connection invalidated: closed instead of returned to the pool"
        );
        return drop(Object::take(obj));
    }
    // In a transaction (or owing a session reset), between statements.
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            let abandoned = Abandoned(Some(obj));
            // On a runtime that is shutting down the task is dropped unrun,
            // and `Abandoned` closes the connection.
            drop(runtime.spawn(abandoned.roll_back()));
        }
        Err(_) => {
            tracing::info!(
                target: "db_txn",
                "dropped in a transaction outside a runtime: connection closed, the server rolls back"
            );
            drop(Object::take(obj));
        }
    }
}

/// A statement's future was dropped before it finished: the connection is
/// closed, never reused, and its statement cancelled on the server.
fn abandon_statement<C: AsyncTxnConnection>(mut obj: Object<Manager<C>>) {
    let slot: &mut Slot<C> = &mut obj;
    slot.tracked.flags.set_discard();
    let counters = &slot.tracked.signals.counters;
    let cancel = if slot.committing {
        Counters::bump(&counters.commit_unknowns);
        tracing::error!(
            target: "db_txn",
            "call dropped while COMMIT was in flight: the outcome is unknown; connection closed"
        );
        // Nothing to stop: the server finishes the COMMIT it has, or never saw it.
        None
    } else {
        tracing::info!(
            target: "db_txn",
            "call dropped mid-statement: connection closed, its statement cancelled on the server"
        );
        Some(slot.tracked.conn.canceller())
    };
    // Closed now (the server rolls the transaction back when it notices).
    drop(Object::take(obj));
    if let Some(cancel) = cancel {
        let cancel = Cancel(Some(cancel));
        match tokio::runtime::Handle::try_current() {
            // On a runtime that is shutting down the task is dropped unrun,
            // and `Cancel` moves to a thread of its own.
            Ok(runtime) => drop(runtime.spawn(cancel.run())),
            Err(_) => drop(cancel),
        }
    }
}

/// A cancel request to send; sent from a thread of its own (on a runtime of
/// its own) if dropped unsent.
struct Cancel(Option<Canceller>);

impl Cancel {
    async fn run(mut self) {
        if let Some(cancel) = self.0.take() {
            let _ = tokio::time::timeout(CANCEL_LIMIT, cancel()).await;
        }
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        let Some(cancel) = self.0.take() else { return };
        // No runtime to spawn on (its runtime shut down, or none): the
        // statement would otherwise run to its end, holding its locks.
        let _ = std::thread::Builder::new()
            .name("db_txn-cancel".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(runtime) = runtime {
                    runtime.block_on(async {
                        let _ = tokio::time::timeout(CANCEL_LIMIT, cancel()).await;
                    });
                }
            });
    }
}

/// A connection left in a transaction by a dropped call, until it is rolled
/// back; closed if dropped before then.
struct Abandoned<C: AsyncTxnConnection>(Option<Object<Manager<C>>>);

impl<C: AsyncTxnConnection> Abandoned<C> {
    async fn roll_back(mut self) {
        let Some(obj) = self.0.as_mut() else { return };
        let slot: &mut Slot<C> = obj;
        let done = tokio::time::timeout(CLEANUP_LIMIT, async {
            while let Ok(Some(_)) = slot.depth() {
                C::TransactionManager::rollback_transaction(&mut slot.tracked.conn).await?;
            }
            if let Some(reset) = slot.pending_reset {
                slot.tracked.conn.batch_execute(reset).await?;
                slot.pending_reset = None;
            }
            diesel::QueryResult::Ok(())
        })
        .await;
        Counters::bump(&slot.tracked.signals.counters.rollbacks);
        if matches!(done, Ok(Ok(()))) && slot.clean() {
            tracing::debug!(target: "db_txn", "call dropped mid-transaction: rolled back in the background");
            slot.tracked.returned();
            drop(self.0.take());
        } else {
            tracing::info!(
                target: "db_txn",
                "call dropped mid-transaction and the ROLLBACK failed: connection closed"
            );
        }
    }
}

impl<C: AsyncTxnConnection> Drop for Abandoned<C> {
    fn drop(&mut self) {
        if let Some(obj) = self.0.take() {
            drop(Object::take(obj));
        }
    }
}
