//! The default pool of each connection type, shared by the whole program.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};

use crate::{Pool, TxnConnection};

type Registry = RwLock<HashMap<TypeId, Box<dyn Any + Send + Sync>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
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
    let mut map = registry().write().unwrap_or_else(PoisonError::into_inner);
    map.insert(TypeId::of::<C>(), Box::new(pool))
        .and_then(|old| old.downcast::<Pool<C>>().ok())
        .map(|old| *old)
}

/// The pool installed for `C`, if any.
pub fn installed<C: TxnConnection>() -> Option<Pool<C>> {
    let map = registry().read().unwrap_or_else(PoisonError::into_inner);
    map.get(&TypeId::of::<C>())
        .and_then(|p| p.downcast_ref::<Pool<C>>())
        .cloned()
}

/// Remove the default pool for `C`, returning it.
pub fn uninstall<C: TxnConnection>() -> Option<Pool<C>> {
    let mut map = registry().write().unwrap_or_else(PoisonError::into_inner);
    map.remove(&TypeId::of::<C>())
        .and_then(|old| old.downcast::<Pool<C>>().ok())
        .map(|old| *old)
}
