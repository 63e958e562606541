//! The default async pool of each connection type, shared by the whole
//! program: the async twin of `registry.rs` (async connection types are
//! types of their own, so the two never meet).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{OnceLock, PoisonError, RwLock};

use super::pool::AsyncPool;
use crate::backend::AsyncTxnConnection;

type Registry = RwLock<HashMap<TypeId, Box<dyn Any + Send + Sync>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Make `pool` the default pool for its connection type: every `#[db_txn]`
/// `async fn` on `C` without `pool = ...` uses it, from any task. Returns
/// the pool it replaces, if any. The async twin of [`install`](crate::install).
pub fn install_async<C: AsyncTxnConnection>(pool: AsyncPool<C>) -> Option<AsyncPool<C>> {
    let mut map = registry().write().unwrap_or_else(PoisonError::into_inner);
    map.insert(TypeId::of::<C>(), Box::new(pool))
        .and_then(|old| old.downcast::<AsyncPool<C>>().ok())
        .map(|old| *old)
}

/// The async pool installed for `C`, if any.
pub fn installed_async<C: AsyncTxnConnection>() -> Option<AsyncPool<C>> {
    let map = registry().read().unwrap_or_else(PoisonError::into_inner);
    map.get(&TypeId::of::<C>())
        .and_then(|p| p.downcast_ref::<AsyncPool<C>>())
        .cloned()
}

/// Remove the default async pool for `C`, returning it.
pub fn uninstall_async<C: AsyncTxnConnection>() -> Option<AsyncPool<C>> {
    let mut map = registry().write().unwrap_or_else(PoisonError::into_inner);
    map.remove(&TypeId::of::<C>())
        .and_then(|old| old.downcast::<AsyncPool<C>>().ok())
        .map(|old| *old)
}
