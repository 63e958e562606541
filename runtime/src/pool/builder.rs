//! `PoolBuilder`: every knob of a pool, with defaults for long-running services.

use std::sync::Arc;
use std::time::Duration;

use super::connect::{Connector, RECONNECT_POLL};
use super::gate::ConnectGate;
use super::manager::Manager;
use super::policy::Policy;
use super::probe::{Monitor, SessionProbe};
use super::replicas::ReplicaSettings;
use super::role::Role;
use super::signals::Signals;
use super::target::{Anchor, Refusal};
use super::watchdog::{Limits, Watchdog};
use super::{Classifier, OnConnect, Pool};
use crate::backend::{self, ConnectSettings, Dialect, Target, TxnConnection};
use crate::classify::ErrorClass;
use crate::error::PoolState;
use crate::Error;

/// Configures a [`Pool`]. Every setting has a default; see each method.
pub struct PoolBuilder<C: TxnConnection> {
    pub(super) config: Config<C>,
}

/// `repr(C)`: the checkout timeout, read on every call, comes first (on the
/// first line of the pool's shared state, see `Shared`).
#[repr(C)]
pub(super) struct Config<C: TxnConnection> {
    pub(super) checkout_timeout: Duration,
    url: String,
    /// What connections open: the URL, or the backend's replacement for it
    /// (SQLite `:memory:`: a database of the pool's own).
    connect_url: String,
    pub(super) max_size: u32,
    min_idle: u32,
    pub(super) policy: Policy,
    pub(super) settings: ConnectSettings,
    classifier: Option<Arc<Classifier>>,
    on_connect: Option<Arc<OnConnect<C>>>,
    limits: Limits,
    keepalive: Option<Duration>,
    /// Read replicas (see `topology.rs` for their knobs).
    pub(super) replicas: ReplicaSettings,
    /// `resolve_commit` and `commit_resolution_timeout`.
    pub(super) resolve_commit: (bool, Duration),
}

impl<C: TxnConnection> Config<C> {
    /// The manager of one pool generation, with its watchdog thread (not
    /// for the start-up probe).
    pub(super) fn manager(&self, signals: Arc<Signals>, watched: bool) -> Manager<C> {
        let gate = Arc::new(ConnectGate::default());
        let watchdog = if watched {
            // An embedded database has no link whose stalls need probing.
            let probe = <C::Dialect as Dialect>::DEFAULT_PORT.map(|_| {
                Monitor::<C>::new(self.url.clone(), gate.clone(), self.limits.probe_timeout)
                    as Arc<dyn SessionProbe>
            });
            Watchdog::start(self.limits, signals.clone(), probe)
        } else {
            None
        };
        Manager {
            connector: Connector {
                url: self.connect_url.clone(),
                settings: self.settings,
                signals,
                classifier: self.classifier.clone(),
                on_connect: self.on_connect.clone(),
                watchdog,
                keepalive: self.keepalive,
                gate,
                role: self.policy.role,
                reconnect_poll: if self.policy.role == Role::Replica {
                    Duration::ZERO
                } else {
                    RECONNECT_POLL
                },
            },
            policy: self
                .policy
                .rules(<C::Dialect as Dialect>::DEFAULT_PORT.is_none()),
        }
    }

    /// Open what the backend's reading of the URL asks for: the URL it
    /// connects to instead, and the connection that keeps an in-memory
    /// database alive.
    fn aim(&mut self, target: &Target) -> diesel::ConnectionResult<Option<Anchor>> {
        if let Some(url) = &target.url {
            self.connect_url.clone_from(url);
        }
        Anchor::open::<C>(target, &self.connect_url)
    }

    /// The configuration of the pool of one read replica at `url`: the same
    /// settings, its connections replicas, waited for only
    /// `replica_checkout_timeout`.
    pub(super) fn for_replica(&self, url: &str) -> Config<C> {
        Config {
            url: url.to_owned(),
            connect_url: url.to_owned(),
            max_size: self.max_size,
            min_idle: self.min_idle,
            policy: Policy {
                role: Role::Replica,
                ..self.policy
            },
            settings: self.settings,
            classifier: self.classifier.clone(),
            on_connect: self.on_connect.clone(),
            checkout_timeout: self.replicas.checkout_timeout,
            limits: self.limits,
            keepalive: self.keepalive,
            replicas: ReplicaSettings::default(),
            // A replica only serves `read_only` calls, which are never resolved.
            resolve_commit: (false, self.resolve_commit.1),
        }
    }

    /// The URL without its password, for messages.
    pub(super) fn server(&self) -> String {
        super::url::redact(&self.url)
    }

    pub(super) fn r2d2(&self, signals: Arc<Signals>) -> r2d2::Pool<Manager<C>> {
        r2d2::Pool::builder()
            .max_size(self.max_size)
            .min_idle(Some(self.min_idle))
            // The manager decides per connection whether a ping is needed.
            .test_on_check_out(true)
            // Retire connections in the background too, not only at checkout.
            .max_lifetime(self.policy.max_lifetime)
            .idle_timeout(self.policy.max_idle.or(Some(Duration::from_secs(600))))
            // r2d2 retries a failed connect every half of this: a replica
            // that is down is not waited for, so not hammered either.
            .connection_timeout(if self.policy.role == Role::Replica {
                self.checkout_timeout.max(Duration::from_secs(10))
            } else {
                self.checkout_timeout
            })
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(self.manager(signals, true))
    }
}

impl<C: TxnConnection> PoolBuilder<C> {
    pub(super) fn new(url: String) -> Self {
        PoolBuilder {
            config: Config {
                connect_url: url.clone(),
                url,
                max_size: 10,
                min_idle: 0,
                policy: Policy {
                    ping_window: Duration::from_millis(500),
                    max_idle: None,
                    max_lifetime: Some(Duration::from_secs(30 * 60)),
                    role: Role::Primary,
                },
                settings: ConnectSettings {
                    sqlite_busy_timeout: Duration::from_secs(5),
                    sqlite_wal: true,
                    transaction_pooler: false,
                },
                classifier: None,
                on_connect: None,
                checkout_timeout: Duration::from_secs(5),
                limits: Limits {
                    stall: None,
                    check_after: Some(Duration::from_secs(2)),
                    probe_timeout: Duration::from_secs(2),
                    leak: Some(Duration::from_secs(60)),
                },
                keepalive: Some(Duration::from_secs(15)),
                replicas: ReplicaSettings::default(),
                resolve_commit: (false, Duration::from_secs(10)),
            },
        }
    }

    /// Most connections open at once. Default 10.
    pub fn max_size(mut self, n: u32) -> Self {
        self.config.max_size = n;
        self
    }

    /// Idle connections kept open when nothing happens. Default 0 (connections
    /// are opened on demand and kept until idle for 10 minutes).
    pub fn min_idle(mut self, n: u32) -> Self {
        self.config.min_idle = n;
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
    /// The window counts from the checkout of the last call that committed
    /// (the clock is read once per call, at checkout), so a call longer
    /// than the window is followed by a ping.
    /// Default 500 ms (HikariCP's value); `Duration::ZERO` pings every checkout.
    /// SQLite connections are never pinged: an embedded database cannot go
    /// stale.
    pub fn ping_window(mut self, t: Duration) -> Self {
        self.config.policy.ping_window = t;
        self
    }

    /// Retire a connection idle for this long without pinging it: for
    /// firewalls and NAT that drop idle connections silently. Default: none
    /// beyond the server's own `wait_timeout` (MariaDB/MySQL, read at connect).
    pub fn max_idle(mut self, t: Duration) -> Self {
        self.config.policy.max_idle = Some(t);
        self
    }

    /// Retire a connection this old. Default 30 minutes; `None` keeps them.
    pub fn max_lifetime(mut self, t: Option<Duration>) -> Self {
        self.config.policy.max_lifetime = t;
        self
    }

    /// Ask the server about a statement that has waited this long for its
    /// answer (500 ms for the checkout ping). The pool's watchdog asks over
    /// a connection of its own whether the session is still running it:
    ///
    /// * running (a long query, a lock wait): left alone, asked again later;
    /// * not running, or unknown to the server: the answer was lost with the
    ///   link, so the connection's socket is shut down;
    /// * no answer within [`liveness_probe_timeout`](Self::liveness_probe_timeout)
    ///   (a frozen server, a black hole) or nobody listening: shut down too.
    ///
    /// A shut-down connection counts as lost: the call runs again (before
    /// COMMIT) or reports the commit outcome. So a call on a frozen server,
    /// or on a link that died silently, ends within about this plus the
    /// probe timeout plus one checkout, and a legitimately long query is
    /// never cut. Default 2 s; `None` turns the probe off (only
    /// [`stall_timeout`](Self::stall_timeout) and TCP then bound a stall).
    /// Applies to MariaDB/MySQL and PostgreSQL connections whose socket the
    /// pool could identify (Linux).
    pub fn liveness_check_after(mut self, t: Option<Duration>) -> Self {
        self.config.limits.check_after = t;
        self
    }

    /// How long the server may take to answer the liveness probe (see
    /// [`liveness_check_after`](Self::liveness_check_after)) before it is
    /// taken for frozen or unreachable, the probe's own connect included.
    /// The probe connects between the pool's connects, never during one
    /// (so that each new connection's socket can be identified): a pool
    /// connect waits for a probe's at most this long. Default 2 s.
    pub fn liveness_probe_timeout(mut self, t: Duration) -> Self {
        self.config.limits.probe_timeout = t;
        self
    }

    /// Shut a connection down when its statement gets no answer for this
    /// long, without asking the server: a hard upper bound for every
    /// statement, which also cuts a legitimately long one. Default: none
    /// (the liveness probe bounds stalls without cutting long queries); set
    /// it above your slowest statement if you want one.
    pub fn stall_timeout(mut self, t: Duration) -> Self {
        self.config.limits.stall = Some(t);
        self
    }

    /// TCP keepalive on new connections: probes after this long without
    /// traffic, then every third of it, three times, and the same total as
    /// `TCP_USER_TIMEOUT` (data sent but never acknowledged). Finds a peer
    /// that vanished (a crashed host, a NAT that dropped the flow) even
    /// while a long statement runs. Default 15 s; `None` leaves the
    /// socket as the driver made it. Not applied when a PostgreSQL URL sets
    /// `keepalives*` or `tcp_user_timeout` itself.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.config.keepalive = idle;
        self
    }

    /// Warn (`tracing` WARN, naming the function) and count a leak when a
    /// connection stays checked out longer than this. Default 60 s, so a
    /// normal call never trips it and a stuck one shows within a minute;
    /// `None` turns it off.
    pub fn leak_threshold(mut self, t: Option<Duration>) -> Self {
        self.config.limits.leak = t;
        self
    }

    /// SQLite: how long a statement waits for a lock held by another
    /// connection. Default 5 s.
    pub fn sqlite_busy_timeout(mut self, t: Duration) -> Self {
        self.config.settings.sqlite_busy_timeout = t;
        self
    }

    /// SQLite: switch file databases to `journal_mode = WAL` (readers do not
    /// block the writer). Default on.
    pub fn sqlite_wal(mut self, on: bool) -> Self {
        self.config.settings.sqlite_wal = on;
        self
    }

    /// Put your own rule in front of the built-in classification: return
    /// `Some(class)` to decide, `None` to fall through.
    ///
    /// ```
    /// use db_txn::{Disconnect, ErrorClass};
    /// use diesel::result::Error;
    /// let builder = db_txn::Pool::<diesel::SqliteConnection>::builder(":memory:")
    ///     .classify(|e: &Error| match e {
    ///         Error::DatabaseError(_, info) if info.message().contains("proxy: backend down") => {
    ///             Some(ErrorClass::Disconnect(Disconnect::Closed))
    ///         }
    ///         _ => None,
    ///     });
    /// # let _ = builder;
    /// ```
    pub fn classify<F>(mut self, rule: F) -> Self
    where
        F: Fn(&diesel::result::Error) -> Option<ErrorClass> + Send + Sync + 'static,
    {
        self.config.classifier = Some(Arc::new(rule));
        self
    }

    /// Run `hook` on every new connection (session settings, extensions).
    pub fn on_connect<F>(mut self, hook: F) -> Self
    where
        F: Fn(&mut C) -> diesel::QueryResult<()> + Send + Sync + 'static,
    {
        self.config.on_connect = Some(Arc::new(hook));
        self
    }

    /// Find out what became of a transaction whose connection was lost
    /// while its COMMIT was in flight, instead of returning
    /// [`Error::CommitUnknown`]: committed, the call returns the body's
    /// value; not committed, the body runs again (a retry, as after a loss
    /// before COMMIT); still unknown after
    /// [`commit_resolution_timeout`](Self::commit_resolution_timeout),
    /// `CommitUnknown`. The default for this pool's functions; a function's
    /// `#[db_txn(resolve_commit = ...)]` overrides it. Default off (see the
    /// cost below).
    ///
    /// How, and what it costs in the steady state (BENCHMARKS.md has the
    /// figures):
    ///
    /// * MariaDB/MySQL: the BEGIN batch also inserts a row with a random id
    ///   into the table `db_txn_commit_markers`, which the pool creates on
    ///   first use (or see the migration in the crate docs): no extra round
    ///   trip, one extra row written per transaction, and one `DELETE` of
    ///   256 markers after every 256th COMMIT.
    /// * PostgreSQL: one query before COMMIT reads the transaction id
    ///   (`txid_current_if_assigned()`): one extra round trip per
    ///   transaction, nothing written.
    /// * SQLite: nothing to do, nothing is lost with a link.
    ///
    /// Read-only transactions (`read_only`) are never resolved: a lost
    /// COMMIT keeps their result anyway.
    pub fn resolve_commit(mut self, on: bool) -> Self {
        self.config.resolve_commit.0 = on;
        self
    }

    /// How long finding out what became of a lost COMMIT may take, on
    /// fresh connections (the wait for one included), before the call gives
    /// up with [`Error::CommitUnknown`]. Default 10 s: long enough for a
    /// server restart. A statement of the resolution that the server never
    /// answers is cut by the liveness probe
    /// ([`liveness_check_after`](Self::liveness_check_after)), which may
    /// add its bound once.
    pub fn commit_resolution_timeout(mut self, t: Duration) -> Self {
        self.config.resolve_commit.1 = t;
        self
    }

    /// Build the pool, opening one connection first so that a wrong
    /// password or an absent server is reported now, as [`Error::Connect`],
    /// within the checkout timeout (a server that accepts the TCP connection
    /// but never answers cannot hold start-up hostage). A URL the backend
    /// does not take is refused before anything is opened, as
    /// [`Error::BadUrl`]:
    ///
    /// ```
    /// use diesel::SqliteConnection;
    /// let err = db_txn::Pool::<SqliteConnection>::new("mysql://app@db/app").unwrap_err();
    /// assert!(matches!(err, db_txn::Error::BadUrl { .. }));
    /// assert!(err.to_string().contains("Pool<MysqlConnection>"), "{err}");
    /// ```
    pub fn build(mut self) -> Result<Pool<C>, Error> {
        let target = backend::target::<C>(&self.config.url).map_err(|reason| Error::BadUrl {
            backend: C::BACKEND,
            url: self.config.server(),
            reason,
        })?;
        let anchor = self.config.aim(&target).map_err(|source| Error::Connect {
            backend: C::BACKEND,
            server: self.config.server(),
            source,
        })?;
        let probe = self.config.manager(Arc::new(Signals::default()), false);
        let (tx, rx) = std::sync::mpsc::channel();
        let unanswered = |last_error: String| Error::Checkout {
            function: None,
            timeout: self.config.checkout_timeout,
            state: PoolState {
                max_size: self.config.max_size,
                ..PoolState::default()
            },
            server: self.config.server(),
            last_error: Some(last_error),
        };
        std::thread::Builder::new()
            .name("db_txn-connect-probe".into())
            .spawn(move || {
                // Closed at once: only the outcome matters.
                let _ = tx.send(probe.connector.open().map(drop));
            })
            .map_err(|e| unanswered(format!("cannot start the connect probe: {e}")))?;
        match rx.recv_timeout(self.config.checkout_timeout) {
            Ok(Ok(())) => Ok(Pool::from_config(self.config, Ok(anchor))),
            Ok(Err(diesel::r2d2::Error::ConnectionError(source))) => Err(Error::Connect {
                backend: C::BACKEND,
                server: self.config.server(),
                source,
            }),
            Ok(Err(diesel::r2d2::Error::QueryError(source))) => Err(Error::Setup {
                backend: C::BACKEND,
                server: self.config.server(),
                source,
            }),
            Err(_) => Err(unanswered(
                "the server accepted no connection in time".into(),
            )),
        }
    }

    /// Build the pool without connecting; the first checkout connects. A
    /// URL the backend does not take makes every checkout fail at once with
    /// [`Error::BadUrl`].
    pub fn build_lazy(mut self) -> Pool<C> {
        let start = match backend::target::<C>(&self.config.url) {
            Ok(target) => self
                .config
                .aim(&target)
                .map_err(|e| Refusal::Connect(e.to_string())),
            Err(reason) => {
                // Nothing is opened, not even in the background.
                self.config.min_idle = 0;
                Err(Refusal::BadUrl(reason))
            }
        };
        Pool::from_config(self.config, start)
    }
}
