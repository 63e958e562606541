//! The handle of a checked-out connection.

use std::ops::{Deref, DerefMut};

use super::child::ChildConnection;
use super::manager::Manager;
use super::tracked::Tracked;
use crate::backend::TxnConnection;

/// A connection checked out of a [`Pool`](crate::Pool); dereferences to `C`
/// and goes back to the pool when dropped (or is closed, if it was found
/// broken).
pub struct PooledConnection<C: TxnConnection> {
    inner: Checked<C>,
    /// Checked out by [`Pool::get`](crate::Pool::get): cleaned on return.
    raw: bool,
}

pub(super) enum Checked<C: TxnConnection> {
    R2d2(r2d2::PooledConnection<Manager<C>>),
    Child(ChildConnection<C>),
}

impl<C: TxnConnection> PooledConnection<C> {
    pub(super) fn new(inner: Checked<C>, raw: bool) -> Self {
        let mut conn = PooledConnection { inner, raw };
        if raw {
            // Only what this user runs counts.
            conn.tracked().flags.take_used();
        }
        conn
    }

    pub(crate) fn tracked(&mut self) -> &mut Tracked<C> {
        match &mut self.inner {
            Checked::R2d2(conn) => conn,
            Checked::Child(conn) => conn.tracked(),
        }
    }

    fn tracked_ref(&self) -> &Tracked<C> {
        match &self.inner {
            Checked::R2d2(conn) => conn,
            Checked::Child(conn) => conn.tracked_ref(),
        }
    }
}

impl<C: TxnConnection> Drop for PooledConnection<C> {
    fn drop(&mut self) {
        if self.raw {
            super::reset::after_raw_use(self.tracked());
        }
        if let Some(watch) = &self.tracked().watch {
            watch.checked_in();
        }
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
