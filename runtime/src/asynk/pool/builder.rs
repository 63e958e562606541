//! `AsyncPoolBuilder`: the knobs of an [`AsyncPool`], with the sync
//! builder's names and defaults.

use std::sync::Arc;
use std::time::Duration;

use super::connect::{AsyncOnConnect, ConnectError, Connector};
use super::manager::Manager;
use super::probe::AsyncMonitor;
use super::{AsyncPool, BoxFuture};
use crate::backend::{AsyncTxnConnection, Dialect};
use crate::classify::ErrorClass;
use crate::error::PoolState;
use crate::pool::policy::Policy;
use crate::pool::probe::SessionProbe;
use crate::pool::replicas::ReplicaSettings;
use crate::pool::role::Role;
use crate::pool::signals::Signals;
use crate::pool::watchdog::{Limits, Watchdog};
use crate::pool::Classifier;
use crate::Error;

/// Configures an [`AsyncPool`]. Every setting has a default, the same as
/// [`PoolBuilder`](crate::PoolBuilder)'s; see each method.
pub struct AsyncPoolBuilder<C: AsyncTxnConnection> {
    pub(super) config: Config<C>,
}

pub(super) struct Config<C: AsyncTxnConnection> {
    pub(super) url: String,
    pub(super) max_size: u32,
    pub(super) checkout_timeout: Duration,
    policy: Policy,
    classifier: Option<Arc<Classifier>>,
    on_connect: Option<Arc<AsyncOnConnect<C>>>,
    limits: Limits,
    keepalive: Option<Duration>,
    /// `resolve_commit` and `commit_resolution_timeout`.
    pub(super) resolve_commit: (bool, Duration),
    /// Behind a transaction-mode pooler (`pooler.rs`).
    pub(super) transaction_pooler: bool,
    /// Read replicas and read-your-writes (`topology.rs`).
    pub(super) replicas: ReplicaSettings,
}

impl<C: AsyncTxnConnection> Config<C> {
    /// The configuration of the pool of the replica at `url`: this pool's
    /// settings, connections that must be replicas, the replica checkout
    /// timeout, no replicas of its own.
    pub(super) fn for_replica(&self, url: &str) -> Config<C> {
        Config {
            url: url.to_owned(),
            max_size: self.max_size,
            checkout_timeout: self.replicas.checkout_timeout,
            policy: Policy {
                role: Role::Replica,
                ..self.policy
            },
            classifier: self.classifier.clone(),
            on_connect: self.on_connect.clone(),
            limits: self.limits,
            keepalive: self.keepalive,
            // A replica only serves `read_only` calls, which are never resolved.
            resolve_commit: (false, self.resolve_commit.1),
            transaction_pooler: self.transaction_pooler,
            replicas: ReplicaSettings::default(),
        }
    }

    /// The URL without its password, for messages.
    pub(super) fn server(&self) -> String {
        crate::pool::url::redact(&self.url)
    }

    /// The manager of the pool, with its watchdog (none for the start-up
    /// probe).
    pub(super) fn manager(&self, signals: Arc<Signals>, watched: bool) -> Manager<C> {
        let serial = Arc::new(tokio::sync::Mutex::new(()));
        let watchdog = if watched {
            let probe = <C::Dialect as Dialect>::DEFAULT_PORT.map(|_| {
                AsyncMonitor::<C>::new(self.url.clone(), serial.clone(), self.limits.probe_timeout)
                    as Arc<dyn SessionProbe>
            });
            Watchdog::start(self.limits, signals.clone(), probe)
        } else {
            None
        };
        Manager {
            connector: Connector {
                url: self.url.clone(),
                signals,
                classifier: self.classifier.clone(),
                on_connect: self.on_connect.clone(),
                watchdog,
                keepalive: self.keepalive,
                serial,
                role: self.policy.role,
                pooler: self.transaction_pooler,
            },
            policy: self.policy.rules(false),
        }
    }
}

impl<C: AsyncTxnConnection> AsyncPoolBuilder<C> {
    pub(super) fn new(url: String) -> Self {
        AsyncPoolBuilder {
            config: Config {
                url,
                max_size: 10,
                checkout_timeout: Duration::from_secs(5),
                policy: Policy {
                    ping_window: Duration::from_millis(500),
                    max_idle: None,
                    max_lifetime: Some(Duration::from_secs(30 * 60)),
                    role: Role::Primary,
                },
                classifier: None,
                on_connect: None,
                limits: Limits {
                    stall: None,
                    check_after: Some(Duration::from_secs(2)),
                    probe_timeout: Duration::from_secs(2),
                    leak: Some(Duration::from_secs(60)),
                },
                keepalive: Some(Duration::from_secs(15)),
                resolve_commit: (false, Duration::from_secs(10)),
                transaction_pooler: false,
                replicas: ReplicaSettings::default(),
            },
        }
    }

    /// Most connections open at once. Default 10.
    pub fn max_size(mut self, n: u32) -> Self {
        self.config.max_size = n;
        self
    }

    /// How long a call waits for a connection (pool exhausted, or server
    /// unreachable) before failing with [`Error::Checkout`]. Default 5 s.
    pub fn checkout_timeout(mut self, t: Duration) -> Self {
        self.config.checkout_timeout = t;
        self
    }

    /// A connection used successfully within this window is handed out
    /// without a ping, unless a disconnect was seen on the pool since.
    /// Default 500 ms; `Duration::ZERO` pings every checkout.
    pub fn ping_window(mut self, t: Duration) -> Self {
        self.config.policy.ping_window = t;
        self
    }

    /// Retire a connection idle for this long without pinging it. Default:
    /// none beyond the server's own `wait_timeout` (MariaDB/MySQL, read at
    /// connect).
    pub fn max_idle(mut self, t: Duration) -> Self {
        self.config.policy.max_idle = Some(t);
        self
    }

    /// Retire a connection this old. Default 30 minutes; `None` keeps them.
    pub fn max_lifetime(mut self, t: Option<Duration>) -> Self {
        self.config.policy.max_lifetime = t;
        self
    }

    /// Only a writable server serves this pool (default on), as
    /// [`PoolBuilder::require_writable`](crate::PoolBuilder::require_writable).
    /// A new connection to a read-only server (a standby, a primary demoted
    /// or fenced) is refused like an unreachable server: the pool keeps
    /// trying within the checkout timeout until a writable one answers, as
    /// during a failover. A write refused as read-only later
    /// ([`Disconnect::ReadOnly`](crate::Disconnect::ReadOnly)) runs again on
    /// a writable server, and the pool's other connections have their role
    /// checked before their next use, so the pool never keeps serving from
    /// a demoted node. The role is read with the server's other settings at
    /// connect: no extra round trip.
    ///
    /// Turn it off for a pool meant for a read-only server (reports on a
    /// replica, without [`replica`](Self::replica) routing):
    ///
    /// ```
    /// use diesel_async::AsyncPgConnection;
    /// let builder = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@replica-1/app")
    ///     .require_writable(false);
    /// # let _ = builder;
    /// ```
    ///
    /// The role: PostgreSQL `transaction_read_only` (on for a standby and
    /// under `default_transaction_read_only`); MariaDB/MySQL
    /// `@@GLOBAL.read_only` (on with `super_read_only` too).
    pub fn require_writable(mut self, on: bool) -> Self {
        self.config.policy.role = if on { Role::Primary } else { Role::Any };
        self
    }

    /// Ask the server about a statement that has waited this long for its
    /// answer, as [`PoolBuilder::liveness_check_after`](crate::PoolBuilder::liveness_check_after)
    /// does. Default 2 s; `None` turns the probe off.
    pub fn liveness_check_after(mut self, t: Option<Duration>) -> Self {
        self.config.limits.check_after = t;
        self
    }

    /// How long the server may take to answer the liveness probe, the
    /// probe's own connect included. Default 2 s.
    pub fn liveness_probe_timeout(mut self, t: Duration) -> Self {
        self.config.limits.probe_timeout = t;
        self
    }

    /// Shut a connection down when its statement gets no answer for this
    /// long, without asking the server. Default: none.
    pub fn stall_timeout(mut self, t: Duration) -> Self {
        self.config.limits.stall = Some(t);
        self
    }

    /// TCP keepalive on new connections, as
    /// [`PoolBuilder::tcp_keepalive`](crate::PoolBuilder::tcp_keepalive). Default 15 s.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.config.keepalive = idle;
        self
    }

    /// Warn and count a leak when a connection stays checked out longer than
    /// this. Default 60 s; `None` turns it off.
    pub fn leak_threshold(mut self, t: Option<Duration>) -> Self {
        self.config.limits.leak = t;
        self
    }

    /// Resolve a COMMIT lost with its connection for every function of this
    /// pool, as [`PoolBuilder::resolve_commit`](crate::PoolBuilder::resolve_commit)
    /// does for a sync pool (the same SQL, the same cost per transaction):
    /// the call asks the server on a fresh connection of the pool, within
    /// [`commit_resolution_timeout`](Self::commit_resolution_timeout),
    /// whether the transaction committed, and returns the body's value or
    /// runs the body again; only when the server cannot tell in time does
    /// the caller get [`Error::CommitUnknown`]. `#[db_txn(resolve_commit =
    /// ...)]` overrides it. Default off. A call whose future is dropped
    /// meanwhile stops asking (see [the crate docs](crate#cancellation)).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), db_txn::Error> {
    /// use diesel_async::AsyncPgConnection;
    /// let pool = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@db/app")
    ///     .resolve_commit(true)
    ///     .commit_resolution_timeout(std::time::Duration::from_secs(5))
    ///     .build()
    ///     .await?;
    /// let s = pool.stats();
    /// // Lost COMMITs, by what the resolution found.
    /// assert_eq!((s.lost_commits_committed, s.lost_commits_aborted, s.commit_unknowns), (0, 0, 0));
    /// # Ok(()) }
    /// ```
    pub fn resolve_commit(mut self, on: bool) -> Self {
        self.config.resolve_commit.0 = on;
        self
    }

    /// How long resolving a lost COMMIT may take before the call gives up
    /// with [`Error::CommitUnknown`]: checkouts, questions and their
    /// answers together (a question still unanswered then is dropped: its
    /// connection closed, its statement cancelled). Default 10 s.
    pub fn commit_resolution_timeout(mut self, t: Duration) -> Self {
        self.config.resolve_commit.1 = t;
        self
    }

    /// Put your own rule in front of the built-in classification, as
    /// [`PoolBuilder::classify`](crate::PoolBuilder::classify).
    pub fn classify<F>(mut self, rule: F) -> Self
    where
        F: Fn(&diesel::result::Error) -> Option<ErrorClass> + Send + Sync + 'static,
    {
        self.config.classifier = Some(Arc::new(rule));
        self
    }

    /// Run `hook` on every new connection (session settings):
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), db_txn::Error> {
    /// use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
    /// let pool = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@db/app")
    ///     .on_connect(|c| Box::pin(c.batch_execute("SET application_name = 'api'")))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn on_connect<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut C) -> BoxFuture<'c, diesel::QueryResult<()>> + Send + Sync + 'static,
    {
        self.config.on_connect = Some(Arc::new(hook));
        self
    }

    /// Build the pool, opening one connection first so that a bad URL, a
    /// wrong password or an absent server is reported now, as
    /// [`Error::Connect`], within the checkout timeout.
    pub async fn build(self) -> Result<AsyncPool<C>, Error> {
        let probe = self.config.manager(Arc::new(Signals::default()), false);
        let opened =
            tokio::time::timeout(self.config.checkout_timeout, probe.connector.open()).await;
        match opened {
            // Closed at once: only the outcome matters.
            Ok(Ok(_)) => Ok(self.build_lazy()),
            Ok(Err(ConnectError::Connect(source))) => Err(Error::Connect {
                backend: C::BACKEND,
                server: self.config.server(),
                source,
            }),
            Ok(Err(ConnectError::Setup(source))) => Err(Error::Setup {
                backend: C::BACKEND,
                server: self.config.server(),
                source,
            }),
            Err(_) => Err(Error::Checkout {
                function: None,
                timeout: self.config.checkout_timeout,
                state: PoolState {
                    max_size: self.config.max_size,
                    ..PoolState::default()
                },
                server: self.config.server(),
                last_error: Some("the server accepted no connection in time".into()),
            }),
        }
    }

    /// Build the pool without connecting; the first checkout connects.
    pub fn build_lazy(self) -> AsyncPool<C> {
        AsyncPool::from_config(self.config)
    }
}
