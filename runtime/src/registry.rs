//! The default pool of each connection type, shared by the whole program,
//! and the pools one thread uses instead (tests running in parallel, see
//! [`testing::install_for_thread`](crate::testing::install_for_thread)).

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::sync::{PoisonError, RwLock};

use crate::{Pool, TxnConnection};

/// A program installs a pool for one to three connection types: a short
/// list is faster to search than a hash map (no hashing on every call).
type Registry = RwLock<Vec<(TypeId, Box<dyn Any + Send + Sync>)>>;

static REGISTRY: Registry = RwLock::new(Vec::new());

fn registry() -> &'static Registry {
    &REGISTRY
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
    let mut list = registry().write().unwrap_or_else(PoisonError::into_inner);
    let id = TypeId::of::<C>();
    let old = match list.iter_mut().find(|(ty, _)| *ty == id) {
        Some((_, slot)) => Some(std::mem::replace(
            slot,
            Box::new(pool) as Box<dyn Any + Send + Sync>,
        )),
        None => {
            list.push((id, Box::new(pool)));
            None
        }
    };
    old.and_then(|old| old.downcast::<Pool<C>>().ok())
        .map(|old| *old)
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
    let list = registry().read().unwrap_or_else(PoisonError::into_inner);
    let id = TypeId::of::<C>();
    list.iter()
        .find(|(ty, _)| *ty == id)
        .and_then(|(_, p)| p.downcast_ref::<Pool<C>>())
        .cloned()
}

/// Remove the default pool for `C`, returning it. A thread's own pool
/// ([`testing::install_for_thread`](crate::testing::install_for_thread))
/// stays until its guard drops.
pub fn uninstall<C: TxnConnection>() -> Option<Pool<C>> {
    let mut list = registry().write().unwrap_or_else(PoisonError::into_inner);
    let id = TypeId::of::<C>();
    let at = list.iter().position(|(ty, _)| *ty == id)?;
    let (_, old) = list.swap_remove(at);
    old.downcast::<Pool<C>>().ok().map(|old| *old)
}
