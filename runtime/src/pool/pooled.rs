//! The handle of a checked-out connection.

use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};

use super::child::ChildConnection;
use super::manager::Manager;
use super::tracked::Tracked;
use crate::backend::TxnConnection;

/// A connection checked out of a [`Pool`](crate::Pool); dereferences to `C`
/// and goes back to the pool when dropped (or is closed, if it was found
/// broken).
pub struct PooledConnection<C: TxnConnection> {
    /// `ManuallyDrop`: in a forked child, a connection checked out by the
    /// parent is neither returned to the parent's pool nor closed.
    inner: ManuallyDrop<Checked<C>>,
    generation: u64,
    /// Checked out by [`Pool::get`](crate::Pool::get): cleaned on return.
    raw: bool,
    /// For a raw checkout: the connection's statement count then.
    raw_from: u32,
}

pub(super) enum Checked<C: TxnConnection> {
    R2d2(r2d2::PooledConnection<Manager<C>>),
    Child(ChildConnection<C>),
}

impl<C: TxnConnection> PooledConnection<C> {
    #[inline(always)]
    pub(super) fn new(inner: Checked<C>, raw: bool, generation: u64) -> Self {
        let mut conn = PooledConnection {
            inner: ManuallyDrop::new(inner),
            generation,
            raw,
            raw_from: 0,
        };
        if raw {
            // Only what this user runs counts. The instrumentation counts
            // statements in the flags' stamp when statements are watched,
            // and sets the `used` flag when they are not.
            let t = conn.tracked();
            t.flags.take_used();
            conn.raw_from = t.flags.stamp.statements();
        }
        conn
    }

    /// Whether a statement ran since a raw checkout.
    fn used_raw(&mut self) -> bool {
        let from = self.raw_from;
        let t = self.tracked();
        let counted = t.flags.stamp.statements() != from;
        t.flags.take_used() || counted
    }

    pub(crate) fn tracked(&mut self) -> &mut Tracked<C> {
        match &mut *self.inner {
            Checked::R2d2(conn) => conn,
            Checked::Child(conn) => conn.tracked(),
        }
    }

    fn tracked_ref(&self) -> &Tracked<C> {
        match &*self.inner {
            Checked::R2d2(conn) => conn,
            Checked::Child(conn) => conn.tracked_ref(),
        }
    }
}

impl<C: TxnConnection> Drop for PooledConnection<C> {
    fn drop(&mut self) {
        if super::fork::current() != self.generation {
            // Held across a fork, dropped in the child: the parent's pool
            // state cannot be touched here (its locks may be held by threads
            // that do not exist in this process), nor its socket closed.
            return;
        }
        if self.raw {
            let used = self.used_raw();
            super::reset::after_raw_use(self.tracked(), used);
        }
        self.tracked().flags.stamp.checked_in();
        // SAFETY: dropped once, here, and never used again.
        unsafe { ManuallyDrop::drop(&mut self.inner) };
    }
}

impl<C: TxnConnection> Deref for PooledConnection<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.tracked_ref().conn
    }
}

impl<C: TxnConnection> DerefMut for PooledConnection<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.tracked().conn
    }
}
