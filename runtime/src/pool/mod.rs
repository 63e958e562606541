//! `Pool<C>`: r2d2 underneath, with the checkout policy of [`manager`], fork
//! safety, and defaults chosen for long-running services.

mod builder;
mod child;
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
    inner: Inner<C>,
}

/// r2d2 in the process that built the pool; a small std-only pool in a
/// forked child (see [`child`]).
enum Inner<C: TxnConnection> {
    R2d2(r2d2::Pool<Manager<C>>),
    Child(std::sync::Arc<child::ChildPool<C>>),
}

impl<C: TxnConnection> Inner<C> {
    /// (open, idle)
    fn state(&self) -> (u32, u32) {
        match self {
            Inner::R2d2(pool) => {
                let s = pool.state();
                (s.connections, s.idle_connections)
            }
            Inner::Child(pool) => pool.state(),
        }
    }
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
        let generation = Box::new(Generation::new(&config, &signals));
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

    /// The pool of this process, rebuilt once in a forked child.
    fn inner(&self) -> &Inner<C> {
        let ptr = self.shared.current.load(Ordering::Acquire);
        // SAFETY: a generation is freed only when `Shared` drops, and one that
        // was replaced is never freed; `&self` keeps `Shared` alive.
        let generation = unsafe { &*ptr };
        if generation.fork_generation == fork::generation() {
            return &generation.inner;
        }
        tracing::info!(
            target: "db_txn",
            pid = std::process::id(),
            "fork detected: this process gets connections of its own, the parent's are left alone"
        );
        let fresh = Box::into_raw(Box::new(Generation::new(
            &self.shared.config,
            &self.shared.signals,
        )));
        match self
            .shared
            .current
            .compare_exchange(ptr, fresh, Ordering::AcqRel, Ordering::Acquire)
        {
            // The inherited generation is leaked on purpose (see `Shared`).
            // SAFETY: as above; `fresh` is now owned by `Shared`.
            Ok(_) => unsafe { &(*fresh).inner },
            Err(winner) => {
                // Another thread of the child rebuilt first; ours never served.
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: as above.
                unsafe { &(*winner).inner }
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
        let inner = self.inner();
        let timeout = self.shared.checkout_timeout;
        let got = match inner {
            Inner::R2d2(pool) => pool.get_timeout(timeout).map(Checked::R2d2).map_err(|e| {
                let text = e.to_string();
                text.strip_prefix("timed out waiting for connection")
                    .map(|rest| rest.trim_start_matches(':').trim())
                    .filter(|rest| !rest.is_empty())
                    .map(str::to_owned)
            }),
            Inner::Child(pool) => pool.get(timeout).map(Checked::Child),
        };
        match got {
            Ok(inner) => {
                Counters::bump(&self.shared.signals.counters.checkouts);
                let mut conn = PooledConnection { inner };
                if let Some(watch) = &conn.tracked().watch {
                    watch.checked_out(if function.is_empty() {
                        "db_txn::Pool::get"
                    } else {
                        function
                    });
                }
                Ok(conn)
            }
            Err(last_error) => Err(Error::Checkout {
                function,
                timeout,
                state: inner.state(),
                last_error,
            }),
        }
    }

    /// Counters since the pool was built, and the live state (connections
    /// open and idle).
    pub fn stats(&self) -> PoolStats {
        let (open, idle) = self.inner().state();
        self.shared.signals.counters.snapshot(open, idle)
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
    inner: Checked<C>,
}

enum Checked<C: TxnConnection> {
    R2d2(r2d2::PooledConnection<Manager<C>>),
    Child(child::ChildConnection<C>),
}

impl<C: TxnConnection> PooledConnection<C> {
    pub(crate) fn tracked(&mut self) -> &mut Tracked<C> {
        match &mut self.inner {
            Checked::R2d2(conn) => conn,
            Checked::Child(conn) => conn.tracked(),
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
        match &self.inner {
            Checked::R2d2(conn) => &conn.conn,
            Checked::Child(conn) => &conn.tracked_ref().conn,
        }
    }
}

impl<C: TxnConnection> DerefMut for PooledConnection<C> {
    fn deref_mut(&mut self) -> &mut C {
        &mut self.tracked().conn
    }
}

impl<C: TxnConnection> Generation<C> {
    fn new(config: &builder::Config<C>, signals: &Arc<Signals>) -> Self {
        let fork_generation = fork::generation();
        let inner = if fork_generation == 0 {
            Inner::R2d2(config.r2d2(signals.clone()))
        } else {
            Inner::Child(child::ChildPool::new(
                config.manager(signals.clone(), true),
                config.max_size,
            ))
        };
        Generation {
            fork_generation,
            inner,
        }
    }
}
