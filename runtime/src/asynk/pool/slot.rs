//! What the async pool keeps per connection: the sync pool's [`Tracked`]
//! (health flags, server info, times, epoch, watch) and what only a
//! connection driven by futures needs: whether a statement's future was
//! dropped mid-flight, a descriptor of its own for the socket, and the
//! session reset a transaction still owes.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use diesel::connection::{Instrumentation, InstrumentationEvent, TransactionManagerStatus};
use diesel_async::TransactionManager;

use crate::backend::AsyncTxnConnection;
use crate::pool::observer::Observer;
use crate::pool::tracked::Tracked;

pub(crate) struct Slot<C> {
    pub tracked: Tracked<C>,
    /// Statements started and not finished, counted by the connection's
    /// instrumentation: above zero once a statement's future was dropped
    /// mid-flight. Such a connection is never reused: MariaDB/MySQL replies
    /// would come out of step, and on any server the statement may still run.
    pub in_flight: Arc<AtomicU32>,
    /// A duplicate of the connection's socket descriptor, when it was
    /// identified: the drivers close theirs on their own schedule (a
    /// tokio-postgres connection task ends on an error), so the watchdog and
    /// the hung-up check use this one, which no other socket can take over.
    /// Dropped after `tracked` (whose drop tells the watchdog first); held,
    /// never read (`tracked.fd` is its number).
    #[allow(dead_code)]
    pub socket: Option<OwnedFd>,
    /// SQL that undoes the session settings of the transaction in progress
    /// (MariaDB/MySQL `max_statement_time`), until it has run.
    pub pending_reset: Option<&'static str>,
    /// COMMIT is in flight.
    pub committing: bool,
}

impl<C: AsyncTxnConnection> Slot<C> {
    /// A statement's future was dropped before the statement finished.
    pub(crate) fn mid_statement(&self) -> bool {
        self.in_flight.load(Relaxed) != 0
    }

    /// `Some(depth)` in a transaction, `None` outside one, `Err` when
    /// diesel's transaction manager is broken.
    pub(crate) fn depth(&mut self) -> Result<Option<u32>, ()> {
        match C::TransactionManager::transaction_manager_status_mut(&mut self.tracked.conn) {
            TransactionManagerStatus::Valid(v) => Ok(v.transaction_depth().map(|d| d.get())),
            TransactionManagerStatus::InError => Err(()),
        }
    }

    /// Nothing is owed on this connection: no statement in flight, no
    /// transaction, no session reset, not marked unusable.
    pub(crate) fn clean(&mut self) -> bool {
        !self.mid_statement()
            && !self.tracked.flags.unusable()
            && self.pending_reset.is_none()
            && self.depth() == Ok(None)
    }
}

/// The sync pool's [`Observer`] (disconnects, conflicts, the watchdog's
/// stamps) plus the count of statements in flight.
pub(crate) struct AsyncObserver<D> {
    pub inner: Observer<D>,
    pub in_flight: Arc<AtomicU32>,
}

impl<D: crate::backend::Dialect + 'static> Instrumentation for AsyncObserver<D> {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match &event {
            InstrumentationEvent::StartQuery { .. } => {
                self.in_flight.fetch_add(1, Relaxed);
            }
            InstrumentationEvent::FinishQuery { .. } => {
                let _ = self
                    .in_flight
                    .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
            }
            _ => {}
        }
        self.inner.on_connection_event(event);
    }
}
