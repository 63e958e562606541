//! `Pool<C>`: r2d2 underneath, with the checkout policy of [`policy`], fork
//! safety, and defaults chosen for long-running services.
//!
//! One concern per file: [`builder`] (every knob), [`connect`] (opening one
//! connection), [`manager`] (r2d2's hooks), [`policy`] (ping, trust or
//! retire), [`tracked`] (per-connection state), [`flags`] (health written by
//! the [`observer`]), [`signals`] (pool-wide epoch and counters),
//! [`watchdog`] (stalls and leaks) with its [`probe`], [`socket`] (the
//! socket under a connection), [`fork`] and [`child`] (after `fork()`),
//! [`pooled`] (the checked-out handle) and [`reset`] (cleaning it when a
//! raw user returns it), [`target`] (what the URL opens, or why it is
//! refused), [`url`] (the URL in messages), [`fault`] (a connection lost on
//! purpose by a retry-safety check).
//! Beyond one server: [`topology`] (the builder's knobs for it), [`role`]
//! (the role a server must have), [`replicas`] (read routing), [`floor`]
//! and [`token`] (read-your-writes).

mod builder;
mod child;
pub(crate) mod clock;
pub(crate) mod connect;
pub(crate) mod fault;
pub(crate) mod flags;
pub(crate) mod floor;
mod fork;
mod gate;
mod manager;
pub(crate) mod observer;
pub(crate) mod policy;
mod pooled;
pub(crate) mod probe;
pub(crate) mod replica_health;
pub(crate) mod replicas;
mod reset;
pub(crate) mod resolution;
pub(crate) mod role;
pub(crate) mod signals;
pub(crate) mod socket;
pub(crate) mod stamp;
mod target;
mod token;
mod topology;
pub(crate) mod tracked;
pub(crate) mod url;
pub(crate) mod watchdog;

use std::marker::PhantomData;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

pub use builder::PoolBuilder;
pub use pooled::PooledConnection;
pub use token::{ParseTokenError, WriteToken};

use crate::backend::{Backend, TxnConnection};
use crate::classify::ErrorClass;
use crate::error::PoolState;
use crate::stats::{Counters, PoolStats};
use crate::Error;
use manager::Manager;
use pooled::Checked;
use signals::Signals;
use target::{Anchor, Refusal};

/// A user rule run before the built-in classification.
pub(crate) type Classifier = dyn Fn(&diesel::result::Error) -> Option<ErrorClass> + Send + Sync;
/// A user hook run on every new connection.
pub(crate) type OnConnect<C> = dyn Fn(&mut C) -> diesel::QueryResult<()> + Send + Sync;

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
            .field("server", &self.shared.config.server())
            .field("id", &self.shared.id)
            .field("stats", &self.stats())
            .finish()
    }
}

// A panic cannot leave a pool half-updated: r2d2 keeps its state behind a
// lock that does not poison, and the runner rolls back before unwinding.
impl<C: TxnConnection> std::panic::UnwindSafe for Pool<C> {}
impl<C: TxnConnection> std::panic::RefUnwindSafe for Pool<C> {}

/// `repr(C)`, aligned to a cache line: what every call reads (the id, the
/// pool of this process, the signals, the refusal and the replicas, boxed
/// so that each is one word, and the config's first field, the checkout
/// timeout) fills the first line.
#[repr(C, align(64))]
struct Shared<C: TxnConnection> {
    id: u64,
    /// The r2d2 pool of this process. Replaced (and the parent's leaked, never
    /// dropped: dropping would close the parent's connections) in a forked child.
    current: AtomicPtr<Generation<C>>,
    signals: Arc<Signals>,
    /// Set when no checkout can ever succeed (a bad URL given to `build_lazy`).
    refused: Option<Box<Refusal>>,
    /// Read replicas, if any (`PoolBuilder::replica`).
    replicas: Option<Box<replicas::Replicas<C>>>,
    config: builder::Config<C>,
    resolution: resolution::Resolution,
    _owns: PhantomData<Box<Generation<C>>>,
    /// Keeps an in-memory database alive as long as the pool.
    _anchor: Option<Anchor>,
}

struct Generation<C: TxnConnection> {
    fork_generation: u64,
    inner: Inner<C>,
}

/// r2d2 in the process that built the pool; a small std-only pool in a
/// forked child (see [`child`]).
enum Inner<C: TxnConnection> {
    R2d2(r2d2::Pool<Manager<C>>),
    Child(Arc<child::ChildPool<C>>),
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
    /// Start configuring a pool for `url`: `mysql://user:pass@host:port/db`
    /// (MariaDB too), `postgres://...` (or libpq's `key=value` pairs), and
    /// for SQLite a file path, a `file:` URI, `sqlite://path` or `:memory:`.
    ///
    /// A URL the backend does not take (another backend's, or for SQLite a
    /// bare word such as `app` that is neither a path nor a URL: write
    /// `./app`) is refused with [`Error::BadUrl`].
    ///
    /// SQLite `:memory:` is one in-memory database shared by the pool's
    /// connections (SQLite's `memdb` VFS), kept as long as the pool lives;
    /// each pool built from `:memory:` has its own. Outside WAL mode, its
    /// readers and writer wait for each other within `sqlite_busy_timeout`.
    ///
    /// ```
    /// use diesel::connection::SimpleConnection;
    /// use diesel::SqliteConnection;
    /// # fn main() -> Result<(), db_txn::Error> {
    /// let pool = db_txn::Pool::<SqliteConnection>::builder(":memory:").max_size(4).build()?;
    /// let (mut a, mut b) = (pool.get()?, pool.get()?);
    /// a.batch_execute("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1)")?;
    /// b.batch_execute("INSERT INTO t VALUES (2)")?; // the same database
    /// # Ok(()) }
    /// ```
    pub fn builder(url: impl Into<String>) -> PoolBuilder<C> {
        PoolBuilder::new(url.into())
    }

    /// A pool with the default settings; opens one connection to check `url`.
    pub fn new(url: impl Into<String>) -> Result<Self, Error> {
        Self::builder(url).build()
    }

    fn from_config(config: builder::Config<C>, start: Result<Option<Anchor>, Refusal>) -> Self {
        let (anchor, refused) = match start {
            Ok(anchor) => (anchor, None),
            Err(refusal) => (None, Some(refusal)),
        };
        let signals = Arc::new(Signals::default());
        let generation = Box::new(Generation::new(&config, &signals));
        let replicas = replicas::Replicas::new(&config);
        let (on, timeout) = config.resolve_commit;
        Pool {
            shared: Arc::new(Shared {
                id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
                resolution: resolution::Resolution::new(on, timeout),
                config,
                signals,
                current: AtomicPtr::new(Box::into_raw(generation)),
                _owns: PhantomData,
                refused: refused.map(Box::new),
                _anchor: anchor,
                replicas: replicas.map(Box::new),
            }),
        }
    }

    /// The pool of this process, rebuilt once in a forked child.
    #[inline]
    fn inner(&self) -> &Inner<C> {
        let ptr = self.shared.current.load(Ordering::Acquire);
        // SAFETY: a generation is freed only when `Shared` drops, and one that
        // was replaced is never freed; `&self` keeps `Shared` alive.
        let generation = unsafe { &*ptr };
        if generation.fork_generation == fork::current() {
            return &generation.inner;
        }
        self.rebuilt_after_fork(ptr)
    }

    /// In a forked child: this process's own pool, built by the first
    /// thread that needs it.
    #[cold]
    #[inline(never)]
    fn rebuilt_after_fork(&self, ptr: *mut Generation<C>) -> &Inner<C> {
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
    /// For code outside `#[db_txn]`; the connection goes back when dropped,
    /// without a transaction: if any statement ran on it, the pool sends
    /// `ROLLBACK` (a no-op when none is open), and a transaction begun
    /// through diesel's transaction manager (`begin_test_transaction`, a
    /// `TransactionManager::begin_transaction` never ended) is rolled back
    /// through it. So the next user, a `#[db_txn]` call included, never
    /// commits work it did not do. A connection that cannot be rolled back
    /// is closed instead. A checkout that runs nothing costs nothing more.
    ///
    /// ```
    /// use diesel::connection::SimpleConnection;
    /// use diesel::prelude::*;
    /// # fn main() -> Result<(), db_txn::Error> {
    /// let pool = db_txn::Pool::<SqliteConnection>::builder(":memory:").max_size(1).build()?;
    /// pool.get()?.batch_execute("CREATE TABLE t (n INTEGER)")?;
    /// {
    ///     let mut conn = pool.get()?;
    ///     conn.batch_execute("BEGIN; INSERT INTO t VALUES (1)")?;
    ///     // Returns early: no COMMIT, no ROLLBACK.
    /// }
    /// let count = diesel::dsl::sql::<diesel::sql_types::BigInt>("(SELECT COUNT(*) FROM t)");
    /// let n: i64 = diesel::select(count).get_result(&mut *pool.get()?)?;
    /// assert_eq!(n, 0, "rolled back when the connection came back");
    /// # Ok(()) }
    /// ```
    ///
    /// Only the transaction is reset. The next user of the connection
    /// inherits anything else a raw user leaves on it:
    ///
    /// * session settings: `SET SESSION ...`, `SET time_zone`, `SET
    ///   search_path`, user variables (`@x`), SQLite `PRAGMA`s;
    /// * temporary tables, and SQLite `ATTACH`ed databases;
    /// * locks held by the session rather than the transaction: MariaDB's
    ///   `GET_LOCK()`, PostgreSQL's session-level `pg_advisory_lock()`;
    /// * prepared statements made with SQL `PREPARE`, PostgreSQL `LISTEN`.
    ///
    /// Put settings every connection needs in
    /// [`on_connect`](PoolBuilder::on_connect), and undo anything else
    /// before the connection goes back. A test transaction does not survive
    /// its checkout (diesel's own pool keeps one on purpose): to run
    /// annotated functions in one, keep the connection and
    /// [`lend`](crate::lend) it.
    pub fn get(&self) -> Result<PooledConnection<C>, Error> {
        self.checkout(None)
    }

    pub(crate) fn checkout(
        &self,
        function: Option<&'static str>,
    ) -> Result<PooledConnection<C>, Error> {
        self.checkout_within(function, self.shared.config.checkout_timeout)
    }

    /// [`checkout`](Self::checkout), waiting at most `timeout`.
    pub(crate) fn checkout_within(
        &self,
        function: Option<&'static str>,
        timeout: std::time::Duration,
    ) -> Result<PooledConnection<C>, Error> {
        self.checkout_with(function, timeout, |conn| conn)
    }

    /// [`checkout`](Self::checkout) into `slot`, where the connection stays
    /// until the slot is emptied: an annotated call's connection (120
    /// bytes) is written once instead of moved through each layer.
    #[inline(always)]
    pub(crate) fn checkout_into<'s>(
        &self,
        function: &'static str,
        slot: &'s mut Option<PooledConnection<C>>,
    ) -> Result<&'s mut PooledConnection<C>, Error> {
        let timeout = self.shared.config.checkout_timeout;
        self.checkout_with(Some(function), timeout, |conn| slot.insert(conn))
    }

    /// A connection of the pool of this process, put where `place` says.
    #[inline(always)]
    fn checkout_with<R: std::borrow::BorrowMut<PooledConnection<C>>>(
        &self,
        function: Option<&'static str>,
        timeout: std::time::Duration,
        place: impl FnOnce(PooledConnection<C>) -> R,
    ) -> Result<R, Error> {
        if let Some(refusal) = &self.shared.refused {
            std::hint::cold_path();
            return Err(refusal.error::<C>(self.shared.config.server()));
        }
        // A raw user's connection is cleaned when it comes back.
        let (raw, generation) = (function.is_none(), fork::current());
        let mut placed = match self.inner() {
            Inner::R2d2(pool) => match pool.get_timeout(timeout) {
                Ok(conn) => place(PooledConnection::new(Checked::R2d2(conn), raw, generation)),
                Err(e) => return Err(self.checkout_failed(function, timeout, r2d2_detail(&e))),
            },
            Inner::Child(pool) => {
                // Only in a forked child.
                std::hint::cold_path();
                match pool.get(timeout) {
                    Ok(conn) => place(PooledConnection::new(Checked::Child(conn), raw, generation)),
                    Err(detail) => return Err(self.checkout_failed(function, timeout, detail)),
                }
            }
        };
        let tracked = placed.borrow_mut().tracked();
        self.shared
            .signals
            .counters
            .checked_out(&mut tracked.trusted);
        tracked
            .flags
            .stamp
            .checked_out(function.unwrap_or("db_txn::Pool::get"));
        Ok(placed)
    }

    #[cold]
    #[inline(never)]
    fn checkout_failed(
        &self,
        function: Option<&'static str>,
        timeout: std::time::Duration,
        last_error: Option<String>,
    ) -> Error {
        let (connections, idle) = self.inner().state();
        Error::Checkout {
            function,
            timeout,
            state: PoolState {
                connections,
                idle,
                max_size: self.shared.config.max_size,
            },
            server: self.shared.config.server(),
            last_error,
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
    #[inline]
    pub(crate) fn id(&self) -> u64 {
        self.shared.id
    }

    #[inline]
    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.signals.counters
    }

    /// Settings and state for resolving lost COMMITs.
    pub(crate) fn resolution(&self) -> &resolution::Resolution {
        &self.shared.resolution
    }

    /// Where a retry-safety check on this pool is armed.
    pub(crate) fn faults(&self) -> &fault::Faults {
        &self.shared.signals.faults
    }

    /// A disconnect was found outside a statement (a hung-up socket).
    pub(crate) fn signals_disconnect(&self) {
        self.shared.signals.disconnect_seen();
    }

    /// A call lost its connection (not to a role change) and runs again:
    /// see `Signals::call_lost_its_connection`.
    pub(crate) fn lost_before_retry(&self, kind: crate::Disconnect) {
        if kind != crate::Disconnect::ReadOnly {
            self.shared.signals.call_lost_its_connection();
        }
    }
}

/// `url` as messages show it: without the password.
pub(crate) fn redact_url(url: &str) -> String {
    url::redact(url)
}

/// The fork generation of this process (0 unless it is a forked child).
pub(crate) fn fork_generation() -> u64 {
    fork::generation()
}

/// The same, once a pool exists (the fork handler is installed).
#[inline]
pub(crate) fn fork_current() -> u64 {
    fork::current()
}

/// The connection's socket was closed or reset by the other end.
#[inline]
pub(crate) fn hung_up(fd: std::os::fd::RawFd) -> bool {
    socket::hung_up(fd)
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

/// What r2d2's checkout timeout says beyond "timed out": the last connect
/// or health-check error, if any.
#[cold]
fn r2d2_detail(e: &r2d2::Error) -> Option<String> {
    let text = e.to_string();
    text.strip_prefix("timed out waiting for connection")
        .map(|rest| rest.trim_start_matches(':').trim())
        .filter(|rest| !rest.is_empty())
        .map(str::to_owned)
}
