//! A default pool for the current thread only, so that tests running in
//! parallel (each on a thread of its own) each use their own database.

use std::marker::PhantomData;

use crate::registry;
use crate::{Pool, TxnConnection};

/// Make `pool` the default pool for `C` on **this thread only**, until the
/// returned guard drops: `#[db_txn]` functions on `C` without `pool = ...`
/// called on this thread use it instead of the pool [`install`]ed for the
/// whole process, and [`installed`] returns it here.
///
/// `cargo test` runs tests in parallel on threads of their own, while
/// [`install`] is process-wide: give each test its own pool (typically of
/// its own [`TestDatabase`](super::TestDatabase)) this way. Threads the test
/// spawns do not inherit it; call `install_for_thread` in them too (a pool
/// is cheap to clone). Guards of nested calls restore the previous pool
/// when they drop, so drop them in the reverse order.
///
/// A thread without a pool of its own pays one load of a thread-local flag
/// per call for this.
///
/// [`install`]: crate::install
/// [`installed`]: crate::installed
///
/// ```
/// use db_txn::db_txn;
/// use diesel::prelude::*;
/// use diesel::SqliteConnection;
///
/// #[db_txn]
/// fn database_name(conn: &mut SqliteConnection) -> Result<String, db_txn::Error> {
///     #[derive(QueryableByName)]
///     struct Row {
///         #[diesel(sql_type = diesel::sql_types::Text)]
///         file: String,
///     }
///     let row: Row = diesel::sql_query("SELECT file FROM pragma_database_list WHERE name = 'main'")
///         .get_result(conn)?;
///     Ok(row.file)
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // Two tests, in parallel, each on its own database.
/// let names: Vec<String> = std::thread::scope(|s| {
///     let tests: Vec<_> = (0..2)
///         .map(|_| {
///             s.spawn(|| {
///                 let db = db_txn::testing::TestDatabase::<SqliteConnection>::new().unwrap();
///                 let _this_thread = db_txn::testing::install_for_thread(db.pool().clone());
///                 database_name().unwrap()
///             })
///         })
///         .collect();
///     tests.into_iter().map(|t| t.join().unwrap()).collect()
/// });
/// assert_ne!(names[0], names[1]);
/// // Nothing was installed for the process.
/// assert!(db_txn::installed::<SqliteConnection>().is_none());
/// # Ok(()) }
/// ```
pub fn install_for_thread<C: TxnConnection>(pool: Pool<C>) -> ThreadPoolGuard<C> {
    ThreadPoolGuard {
        previous: registry::set_thread_pool(Some(pool)),
        _not_send: PhantomData,
    }
}

/// Keeps a pool the default of this thread
/// ([`install_for_thread`]); restores the previous one when dropped.
#[must_use = "the thread's pool is uninstalled when the guard drops"]
pub struct ThreadPoolGuard<C: TxnConnection> {
    previous: Option<Pool<C>>,
    /// Dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

impl<C: TxnConnection> std::fmt::Debug for ThreadPoolGuard<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPoolGuard")
            .field("connection", &std::any::type_name::<C>())
            .field("restores_previous", &self.previous.is_some())
            .finish()
    }
}

impl<C: TxnConnection> Drop for ThreadPoolGuard<C> {
    fn drop(&mut self) {
        registry::set_thread_pool(self.previous.take());
    }
}
