//! The default pool of each connection type, shared by the whole program.

use std::any::{Any, TypeId};
use std::sync::{PoisonError, RwLock};

use crate::{Pool, TxnConnection};

/// A program installs a pool for one to three connection types: a short
/// list is faster to search than a hash map (no hashing on every call).
type Registry = RwLock<Vec<(TypeId, Box<dyn Any + Send + Sync>)>>;

static REGISTRY: Registry = RwLock::new(Vec::new());

fn registry() -> &'static Registry {
    &REGISTRY
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

/// The pool installed for `C`, if any.
pub fn installed<C: TxnConnection>() -> Option<Pool<C>> {
    let list = registry().read().unwrap_or_else(PoisonError::into_inner);
    let id = TypeId::of::<C>();
    list.iter()
        .find(|(ty, _)| *ty == id)
        .and_then(|(_, p)| p.downcast_ref::<Pool<C>>())
        .cloned()
}

/// Remove the default pool for `C`, returning it.
pub fn uninstall<C: TxnConnection>() -> Option<Pool<C>> {
    let mut list = registry().write().unwrap_or_else(PoisonError::into_inner);
    let id = TypeId::of::<C>();
    let at = list.iter().position(|(ty, _)| *ty == id)?;
    let (_, old) = list.swap_remove(at);
    old.downcast::<Pool<C>>().ok().map(|old| *old)
}
