//! `Pool<C>`: r2d2 underneath, with the checkout policy of [`manager`], fork
//! safety, and defaults chosen for long-running services.

mod builder;
mod fork;
pub(crate) mod manager;

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use builder::PoolBuilder;
use manager::{Manager, Signals, Tracked};

use crate::backend::{Backend, TxnConnection};
use crate::stats::{Counters, PoolStats};
use crate::Error;

/// A pool of connections of type `C`, cheap to clone (all clones share it).
///
/// Build one at start-up and either [`install`](crate::install) it as the
/// default for `C` or name it with `#[db_txn(pool = ...)]`:
///
/// ```
/// use diesel::SqliteConnection;
/// # fn main() -> Result<(), db_txn::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let url = dir.path().join("app.db");
/// # let url = url.to_str().unwrap();
/// let pool = db_txn::Pool::<SqliteConnection>::builder(url)
///     .max_size(4)
///     .checkout_timeout(std::time::Duration::from_secs(2))
///     .build()?;
/// db_txn::install(pool);
/// # Ok(()) }
/// ```
pub struct Pool<C: TxnConnection> {
    shared: Arc<Shared<C>>,
}

impl<C: TxnConnection> Clone for Pool<C> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl<C: TxnConnection> std::fmt::Debug for Pool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("connection", &std::any::type_name::<C>())
            .field("id", &self.shared.id)
            .field("stats", &self.stats())
            .finish()
    }
}

// A panic cannot leave a pool half-updated: r2d2 keeps its state behind a
// lock that does not poison, and the runner rolls back before unwinding.
impl<C: TxnConnection> std::panic::UnwindSafe for Pool<C> {}
impl<C: TxnConnection> std::panic::RefUnwindSafe for Pool<C> {}

struct Shared<C: TxnConnection> {
    id: u64,
    checkout_timeout: Duration,
    config: builder::Config<C>,
    signals: Arc<Signals>,
    /// The r2d2 pool of this process. Replaced (and the parent's leaked, never
    /// dropped: dropping would close the parent's connections) in a forked child.
    current: AtomicPtr<Generation<C>>,
    _owns: PhantomData<Box<Generation<C>>>,
}

struct Generation<C: TxnConnection> {
    fork_generation: u64,
    r2d2: r2d2::Pool<Manager<C>>,
}

impl<C: TxnConnection> Drop for Shared<C> {
    fn drop(&mut self) {
        let current = *self.current.get_mut();
        // SAFETY: `current` came from `Box::into_raw` and is only freed here.
        let generation = unsafe { Box::from_raw(current) };
        if generation.fork_generation != fork::generation() {
            // The parent's pool, inherited by fork: never close its connections.
            std::mem::forget(generation);
        }
    }
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

impl<C: TxnConnection> Pool<C> {
    /// Start configuring a pool for `url` (a file path or `:memory:` for
    /// SQLite, `mysql://user:pass@host:port/db`, `postgres://...`).
    pub fn builder(url: impl Into<String>) -> PoolBuilder<C> {
        PoolBuilder::new(url.into())
    }

    /// A pool with the default settings; opens one connection to check `url`.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        Self::builder(url).build()
    }

    fn from_config(config: builder::Config<C>) -> Self {
        let signals = Arc::new(Signals::default());
        let generation = Box::new(Generation {
            fork_generation: fork::generation(),
            r2d2: config.r2d2(signals.clone()),
        });
        Pool {
            shared: Arc::new(Shared {
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                checkout_timeout: config.checkout_timeout,
                config,
                signals,
                current: AtomicPtr::new(Box::into_raw(generation)),
                _owns: PhantomData,
            }),
        }
    }

    /// The r2d2 pool of this process, rebuilt once in a forked child.
    fn r2d2(&self) -> &r2d2::Pool<Manager<C>> {
        let ptr = self.shared.current.load(Ordering::Acquire);
        // SAFETY: a generation is freed only when `Shared` drops, and one that
        // was replaced is never freed; `&self` keeps `Shared` alive.
        let generation = unsafe { &*ptr };
        let now = fork::generation();
        if generation.fork_generation == now {
            return &generation.r2d2;
        }
        let fresh = Box::into_raw(Box::new(Generation {
            fork_generation: now,
            r2d2: self.shared.config.r2d2(self.shared.signals.clone()),
        }));
        match self
            .shared
            .current
            .compare_exchange(ptr, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // The inherited generation is leaked on purpose (see `Shared`).
            // SAFETY: as above; `fresh` is now owned by `Shared`.
            Ok(_) => unsafe { &(*fresh).r2d2 },
            Err(winner) => {
                // Another thread of the child rebuilt first; ours never served.
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as above.
                unsafe { &(*winner).r2d2 }
            }
        }
    }

    /// Check a connection out, waiting at most the checkout timeout.
    ///
    /// For code outside `#[db_txn]`; the connection goes back when dropped.
    pub fn get(&self) -> Result<PooledConnection<C>, Error> {
        self.checkout("")
    }

    pub(crate) fn checkout(&self, function: &'static str) -> Result<PooledConnection<C>, Error> {
        let r2d2 = self.r2d2();
        match r2d2.get_timeout(self.shared.checkout_timeout) {
            Ok(inner) => {
                Counters::bump(&self.shared.signals.counters.checkouts);
                Ok(PooledConnection { inner })
            }
            Err(e) => {
                let state = r2d2.state();
                let text = e.to_string();
                let last_error = text
                    .strip_prefix("timed out waiting for connection")
                    .map(|rest| rest.trim_start_matches(':').trim())
                    .filter(|rest| !rest.is_empty())
                    .map(str::to_owned);
                Err(Error::Checkout {
                    function,
                    timeout: self.shared.checkout_timeout,
                    state: (state.connections, state.idle_connections),
                    last_error,
                })
            }
        }
    }

    /// Counters since the pool was built, and the live r2d2 state.
    pub fn stats(&self) -> PoolStats {
        let state = self.r2d2().state();
        self.shared
            .signals
            .counters
            .snapshot(state.connections, state.idle_connections)
    }

    /// The database behind this pool.
    pub fn backend(&self) -> Backend {
        C::BACKEND
    }

    /// A process-unique id; sessions join calls on the same pool only.
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.signals.counters
    }
}

/// A connection checked out of a [`Pool`]; dereferences to `C` and goes back
/// to the pool when dropped (or is closed, if it was found broken).
pub struct PooledConnection<C: TxnConnection> {
    inner: r2d2::PooledConnection<Manager<C>>,
}

impl<C: TxnConnection> PooledConnection<C> {
    pub(crate) fn tracked(&mut self) -> &mut Tracked<C> {
        &mut self.inner
    }
}

impl<C: TxnConnection> Deref for PooledConnection<C> {
    type Target = C;
    fn deref(&self) -> &C {
        &self.inner.conn
    }
}

impl<C: TxnConnection> DerefMut for PooledConnection<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.inner.conn
    }
}
