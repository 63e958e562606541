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
}

pub(super) enum Checked<C: TxnConnection> {
    R2d2(r2d2::PooledConnection<Manager<C>>),
    Child(ChildConnection<C>),
}

impl<C: TxnConnection> PooledConnection<C> {
    pub(super) fn new(inner: Checked<C>) -> Self {
        PooledConnection { inner }
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
