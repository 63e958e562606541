//! The default pool of each connection type, shared by the whole program,
//! and the pools one thread uses instead (tests running in parallel, see
//! [`testing::install_for_thread`](crate::testing::install_for_thread)).

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::sync::{PoisonError, RwLock};

use crate::{Pool, TxnConnection};

/// The default pool of one connection type: each driver has a static one
/// ([`Driver::default_slot`](crate::backend::Driver::default_slot)), so the
/// lookup on every call is one read lock, no search and no downcast.
pub struct DefaultSlot<C: TxnConnection>(RwLock<Option<Pool<C>>>);

impl<C: TxnConnection> DefaultSlot<C> {
    // Each backend's driver makes one; a build without a backend makes none.
    #[cfg_attr(
        not(any(feature = "sqlite", feature = "mysql", feature = "postgres")),
        allow(dead_code)
    )]
    pub(crate) const fn new() -> Self {
        DefaultSlot(RwLock::new(None))
    }

    fn replace(&self, pool: Option<Pool<C>>) -> Option<Pool<C>> {
        let mut slot = self.0.write().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *slot, pool)
    }

    #[inline]
    fn get(&self) -> Option<Pool<C>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

thread_local! {
    /// This thread has pools of its own: checked first, so a thread without
    /// any pays one load of a thread-local flag per call.
    static THREAD_HAS_POOLS: Cell<bool> = const { Cell::new(false) };
    static THREAD_POOLS: RefCell<Vec<(TypeId, Box<dyn Any>)>> = const { RefCell::new(Vec::new()) };
}

/// Make `pool` (or none) this thread's pool for `C`; returns the one it
/// replaces.
pub(crate) fn set_thread_pool<C: TxnConnection>(pool: Option<Pool<C>>) -> Option<Pool<C>> {
    let id = TypeId::of::<C>();
    THREAD_POOLS.with(|list| {
        let mut list = list.borrow_mut();
        let old = list
            .iter()
            .position(|(ty, _)| *ty == id)
            .map(|at| list.swap_remove(at).1);
        if let Some(pool) = pool {
            list.push((id, Box::new(pool)));
        }
        THREAD_HAS_POOLS.with(|has| has.set(!list.is_empty()));
        old.and_then(|old| old.downcast::<Pool<C>>().ok())
            .map(|old| *old)
    })
}

#[cold]
fn thread_pool<C: TxnConnection>() -> Option<Pool<C>> {
    let id = TypeId::of::<C>();
    THREAD_POOLS.with(|list| {
        list.borrow()
            .iter()
            .find(|(ty, _)| *ty == id)
            .and_then(|(_, p)| p.downcast_ref::<Pool<C>>())
            .cloned()
    })
}

/// Make `pool` the default pool for its connection type: every `#[db_txn]`
/// function on `C` without `pool = ...` uses it, from any thread. Returns the
/// pool it replaces, if any.
///
/// ```
/// use diesel::SqliteConnection;
/// # fn main() -> Result<(), db_txn::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let url = dir.path().join("app.db");
/// let pool = db_txn::Pool::<SqliteConnection>::new(url.to_str().unwrap())?;
/// assert!(db_txn::install(pool).is_none());
/// assert!(db_txn::installed::<SqliteConnection>().is_some());
/// # Ok(()) }
/// ```
pub fn install<C: TxnConnection>(pool: Pool<C>) -> Option<Pool<C>> {
    C::default_slot().replace(Some(pool))
}

/// The pool a `#[db_txn]` function on `C` without `pool = ...` uses on this
/// thread, if any: the one [`install`]ed, unless the thread has its own
/// ([`testing::install_for_thread`](crate::testing::install_for_thread)).
pub fn installed<C: TxnConnection>() -> Option<Pool<C>> {
    if THREAD_HAS_POOLS.with(Cell::get) {
        if let Some(pool) = thread_pool::<C>() {
            return Some(pool);
        }
    }
    C::default_slot().get()
}

/// Remove the default pool for `C`, returning it. A thread's own pool
/// ([`testing::install_for_thread`](crate::testing::install_for_thread))
/// stays until its guard drops.
pub fn uninstall<C: TxnConnection>() -> Option<Pool<C>> {
    C::default_slot().replace(None)
}
