//! `AsyncPool<C>`: deadpool underneath, with the sync pool's checkout
//! policy, health flags, watchdog and counters.
//!
//! Why deadpool rather than bb8: deadpool's `Manager::recycle` gets the
//! connection at checkout and may refuse it (where the policy retires or
//! pings), `Object::take` removes a connection from the pool for good (what
//! a connection dropped mid-statement needs), and it runs no background
//! tasks of its own, so a pool works on any tokio runtime, current-thread
//! included, and nothing is spawned behind the caller's back. bb8 checks
//! connections with `is_valid` on every checkout unless
//! `test_on_check_out(false)`, runs its reaper and replenishing as spawned
//! tasks, and gives a connection back on drop with no way to say "this one
//! owes a ROLLBACK"; what deadpool lacks (idle reaping, `min_idle`) the
//! policy covers at checkout, as r2d2's pool does here.
//!
//! One concern per file: [`builder`], [`connect`], [`manager`] (deadpool's
//! hooks), [`slot`] (per-connection state), [`pooled`] (the checked-out
//! handle and what its drop does), [`probe`] (the watchdog's question),
//! [`pooler`] (behind a transaction-mode pooler), [`replicas`] (read
//! replicas and read-your-writes, set up in [`topology`]).

mod builder;
mod connect;
mod manager;
mod pace;
pub(crate) mod pooled;
pub(crate) mod pooler;
mod probe;
mod replicas;
pub(crate) mod slot;
mod topology;

use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use builder::AsyncPoolBuilder;
pub use pooled::AsyncPooledConnection;

use crate::backend::{AsyncTxnConnection, Backend};
use crate::error::PoolState;
use crate::pool::resolution::Resolution;
use crate::pool::role::ROLE_POLL;
use crate::pool::signals::Signals;
use crate::stats::{Counters, PoolStats};
use crate::Error;
use manager::Manager;

/// A boxed `Send` future, as [`AsyncPoolBuilder::on_connect`] takes.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A pool of diesel-async connections of type `C`, cheap to clone (all
/// clones share it): the async twin of [`Pool`](crate::Pool), with the same
/// checkout policy, watchdog and counters.
///
/// It runs on [deadpool](https://docs.rs/deadpool) rather than bb8: deadpool
/// asks the pool's manager about a connection at each checkout (where the
/// policy trusts, pings or retires it), lets a connection that owes a
/// ROLLBACK or was dropped mid-statement be taken out for good, and spawns
/// no background tasks, so the pool works on any tokio runtime and a
/// checkout does nothing behind the caller's back. bb8 pings every checkout
/// unless told not to, reaps and refills from spawned tasks, and puts back
/// whatever connection is dropped.
///
/// Build one at start-up, inside the tokio runtime, and either
/// [`install_async`](crate::install_async) it as the default for `C` or
/// name it with `#[db_txn(pool = ...)]`:
///
/// ```no_run
/// # async fn f() -> Result<(), db_txn::Error> {
/// use diesel_async::AsyncPgConnection;
/// let pool = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@db/app")
///     .max_size(4)
///     .checkout_timeout(std::time::Duration::from_secs(2))
///     .build()
///     .await?;
/// db_txn::install_async(pool);
/// # Ok(()) }
/// ```
pub struct AsyncPool<C: AsyncTxnConnection> {
    shared: Arc<Shared<C>>,
}

struct Shared<C: AsyncTxnConnection> {
    id: u64,
    /// The fork generation of the process that built it: in a forked child
    /// the pool is neither used nor dropped (dropping would close, with a
    /// QUIT, connections the parent still uses).
    generation: u64,
    pool: ManuallyDrop<deadpool::managed::Pool<Manager<C>>>,
    url: String,
    max_size: u32,
    checkout_timeout: Duration,
    signals: Arc<Signals>,
    /// `resolve_commit`: its settings and the marker table's state.
    resolution: Resolution,
    /// Read replicas, if any (`AsyncPoolBuilder::replica`).
    replicas: Option<replicas::AsyncReplicas<C>>,
    /// The turns of the checkouts that wait for a server to come back.
    pace: pace::ReconnectPace,
}

impl<C: AsyncTxnConnection> Drop for Shared<C> {
    fn drop(&mut self) {
        if self.generation == crate::pool::fork_generation() {
            // SAFETY: dropped once, here, and never used again.
            unsafe { ManuallyDrop::drop(&mut self.pool) };
        }
    }
}

impl<C: AsyncTxnConnection> Clone for AsyncPool<C> {
    fn clone(&self) -> Self {
        AsyncPool {
            shared: self.shared.clone(),
        }
    }
}

impl<C: AsyncTxnConnection> std::fmt::Debug for AsyncPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncPool")
            .field("connection", &std::any::type_name::<C>())
            .field("server", &crate::pool::url::redact(&self.shared.url))
            .field("id", &self.shared.id)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Async pools have ids of their own (sessions never mix sync and async).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl<C: AsyncTxnConnection> AsyncPool<C> {
    /// Start configuring a pool for `url` (`postgres://...`,
    /// `mysql://user:pass@host:port/db`).
    pub fn builder(url: impl Into<String>) -> AsyncPoolBuilder<C> {
        AsyncPoolBuilder::new(url.into())
    }

    /// A pool with the default settings; opens one connection to check `url`.
    pub async fn new(url: impl Into<String>) -> Result<Self, Error> {
        Self::builder(url).build().await
    }

    fn from_config(config: builder::Config<C>) -> Self {
        let signals = Arc::new(Signals::default());
        let manager = config.manager(signals.clone(), true);
        let max_size = usize::try_from(config.max_size).unwrap_or(usize::MAX);
        let (on, timeout) = config.resolve_commit;
        let replicas = replicas::AsyncReplicas::new(&config);
        let pool = deadpool::managed::Pool::builder(manager)
            .max_size(max_size)
            .build()
            // Only a timeout without a runtime fails to build; none is set.
            .unwrap_or_else(|e| unreachable!("db_txn: deadpool refused its settings: {e}"));
        AsyncPool {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                generation: crate::pool::fork_generation(),
                pool: ManuallyDrop::new(pool),
                url: config.url,
                max_size: config.max_size,
                checkout_timeout: config.checkout_timeout,
                signals,
                resolution: Resolution::new(on, timeout),
                replicas,
                pace: pace::ReconnectPace::new(),
            }),
        }
    }

    /// Check a connection out, waiting at most the checkout timeout.
    ///
    /// For code outside `#[db_txn]`; the connection goes back when dropped
    /// (or is closed, if it owes anything: see [the crate docs](crate#cancellation)).
    pub async fn get(&self) -> Result<AsyncPooledConnection<C>, Error> {
        self.checkout(None).await
    }

    pub(crate) async fn checkout(
        &self,
        function: Option<&'static str>,
    ) -> Result<AsyncPooledConnection<C>, Error> {
        self.checkout_within(function, self.shared.checkout_timeout)
            .await
    }

    /// Check a connection out, waiting at most `timeout`.
    pub(crate) async fn checkout_within(
        &self,
        function: Option<&'static str>,
        timeout: Duration,
    ) -> Result<AsyncPooledConnection<C>, Error> {
        if self.shared.generation != crate::pool::fork_generation() {
            return Err(Error::AsyncPoolForked { function });
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match tokio::time::timeout_at(deadline, self.shared.pool.get()).await {
                Ok(Ok(obj)) => {
                    if last_error.is_some() {
                        // The server is back: the other waiting checkouts
                        // try now rather than at their turn.
                        self.shared.pace.server_back();
                    }
                    let mut conn = AsyncPooledConnection::new(obj);
                    let tracked = &mut conn.slot().tracked;
                    self.shared
                        .signals
                        .counters
                        .checked_out(&mut tracked.trusted);
                    tracked
                        .flags
                        .stamp
                        .checked_out(function.unwrap_or("db_txn::AsyncPool::get"));
                    return Ok(conn);
                }
                // A failed connect: the server may be restarting. Ask again
                // until the deadline, taking turns with the other waiting
                // checkouts (`pace.rs`).
                Ok(Err(e)) => {
                    let now = tokio::time::Instant::now();
                    let mut turn = None;
                    last_error = Some(match e {
                        deadpool::managed::PoolError::Backend(e) => {
                            // A server of the wrong role answered: during a
                            // failover one of the right role appears any
                            // moment.
                            if e.wrong_role() {
                                turn = Some(now + ROLE_POLL);
                            }
                            e.to_string()
                        }
                        other => other.to_string(),
                    });
                    let turn = turn.unwrap_or_else(|| self.shared.pace.turn_after_failure(now));
                    self.shared.pace.wait(turn, deadline).await;
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        let status = self.shared.pool.status();
        Err(Error::Checkout {
            function,
            timeout,
            state: PoolState {
                connections: u32::try_from(status.size).unwrap_or(u32::MAX),
                idle: u32::try_from(status.available).unwrap_or(u32::MAX),
                max_size: self.shared.max_size,
            },
            server: crate::pool::url::redact(&self.shared.url),
            last_error,
        })
    }

    /// Counters since the pool was built, and the live state (connections
    /// open and idle).
    pub fn stats(&self) -> PoolStats {
        if self.shared.generation != crate::pool::fork_generation() {
            // The parent's pool state may be locked forever in the child.
            return self.shared.signals.counters.snapshot(0, 0);
        }
        let status = self.shared.pool.status();
        self.shared.signals.counters.snapshot(
            u32::try_from(status.size).unwrap_or(u32::MAX),
            u32::try_from(status.available).unwrap_or(u32::MAX),
        )
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

    /// What the pool knows for resolving lost COMMITs.
    pub(crate) fn resolution(&self) -> &Resolution {
        &self.shared.resolution
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
