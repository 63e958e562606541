//! Opening one pooled async connection: establish (finding its socket),
//! instrument, run the user's hook, read the server's settings, and set up
//! what the watchdog needs. The async twin of `pool/connect.rs`, with the
//! same pieces (`Observer`, `Watchdog`, `socket`).

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU32};
use std::sync::Arc;
use std::time::Duration;

use super::pooler;
use super::slot::{AsyncObserver, Slot};
use crate::backend::{AsyncTxnConnection, Dialect};
use crate::pool::clock;
use crate::pool::fault::Point;
use crate::pool::flags::Flags;
use crate::pool::observer::Observer;
use crate::pool::policy;
use crate::pool::role::{self, Role};
use crate::pool::signals::{Signals, Warning};
use crate::pool::socket::{self, Peer};
use crate::pool::tracked::Tracked;
use crate::pool::watchdog::Watchdog;
use crate::pool::Classifier;
use crate::stats::Counters;

/// A user hook run on every new async connection.
pub(crate) type AsyncOnConnect<C> =
    dyn for<'c> Fn(&'c mut C) -> super::BoxFuture<'c, diesel::QueryResult<()>> + Send + Sync;

/// Why a new connection could not be used.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The driver could not connect.
    Connect(diesel::ConnectionError),
    /// Connected, but its set-up failed.
    Setup(diesel::result::Error),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Connect(e) => fmt::Display::fmt(e, f),
            ConnectError::Setup(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl ConnectError {
    /// Refused for the server's role (see `pool/role.rs`): a server of the
    /// right role may appear any moment (a promotion, an address moving).
    pub(crate) fn wrong_role(&self) -> bool {
        matches!(self, ConnectError::Connect(diesel::ConnectionError::BadConnection(m)) if role::is_refusal(m))
    }

    /// "No server there (yet)": worth trying again while a checkout waits.
    pub(crate) fn unreachable<C: AsyncTxnConnection>(&self) -> bool {
        let message = match self {
            ConnectError::Connect(diesel::ConnectionError::BadConnection(m)) => m.as_str(),
            // tokio-postgres reports a refused connect as a set-up error.
            ConnectError::Connect(diesel::ConnectionError::CouldntSetupConfiguration(
                diesel::result::Error::DatabaseError(_, info),
            )) => info.message(),
            _ => return false,
        };
        <C::Dialect as Dialect>::unreachable(message)
    }
}

/// What every new connection of one async pool is opened with.
pub(crate) struct Connector<C: AsyncTxnConnection> {
    pub url: String,
    pub signals: Arc<Signals>,
    pub classifier: Option<Arc<Classifier>>,
    pub on_connect: Option<Arc<AsyncOnConnect<C>>>,
    pub watchdog: Option<Watchdog>,
    pub keepalive: Option<Duration>,
    /// Connects run one at a time, the watchdog's own (its probe's) among
    /// them, so that the socket that appears is the new connection's.
    pub serial: Arc<tokio::sync::Mutex<()>>,
    /// The role the server must have.
    pub role: Role,
    /// Behind a transaction-mode pooler (`pooler.rs`).
    pub pooler: bool,
}

impl<C: AsyncTxnConnection> Connector<C> {
    pub(crate) async fn open(&self) -> Result<Slot<C>, ConnectError> {
        let (mut conn, candidates) = self.establish().await.map_err(ConnectError::Connect)?;
        if self.pooler {
            // A named statement prepared in one transaction is another
            // client's (or missing) in the next: keep none.
            conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        }
        let flags = Arc::new(Flags::default());
        let in_flight = Arc::new(AtomicU32::new(0));
        let watch = self.watchdog.as_ref().map(|w| w.watch(&flags));
        let stamped = self
            .watchdog
            .as_ref()
            .is_some_and(Watchdog::times_statements);
        conn.set_instrumentation(AsyncObserver {
            inner: Observer::<C::Dialect> {
                flags: flags.clone(),
                signals: self.signals.clone(),
                classifier: self.classifier.clone(),
                inner: diesel::connection::get_default_instrumentation(),
                stamps: watch.is_some() && stamped,
                seq: 0,
                // No retry-safety check on an async pool.
                fault: Point {
                    socket: Arc::new(AtomicI32::new(-1)),
                },
                _conn: PhantomData,
            },
            in_flight: in_flight.clone(),
        });
        if let Some(hook) = &self.on_connect {
            hook(&mut conn).await.map_err(ConnectError::Setup)?;
        }
        // Before the role is read: a write refused as read-only meanwhile
        // leaves this connection due for a check.
        let role_epoch = self.signals.role_epoch();
        // After the hook: a `wait_timeout` it sets is the one that counts.
        let mut server = pooler::own_read(&mut conn, self.pooler, async |c| c.server_info().await)
            .await
            .map_err(ConnectError::Setup)?;
        if !self.role.accepts(server.role) {
            return Err(ConnectError::Connect(
                diesel::ConnectionError::BadConnection(self.role.refusal(server.role)),
            ));
        }
        if self.pooler {
            // Each transaction may run on another server session: the
            // liveness probe can only ask whether the server answers at all.
            server.behind_pooler = true;
            server.session_id = None;
        }
        let socket = self.identify(&mut conn, candidates).await?;
        let fd = socket.as_ref().map(AsRawFd::as_raw_fd);
        if let Some(watch) = &watch {
            watch.set_session(server.session_id);
            if let Some(fd) = fd {
                watch.set_socket(fd);
            }
        }
        Counters::bump(&self.signals.counters.opened);
        let now = clock::now();
        Ok(Slot {
            tracked: Tracked {
                conn,
                flags,
                server,
                created: now,
                last_ok: now,
                ok: false,
                last_release: now,
                judged: now,
                trusted: false,
                direct: false,
                retire_idle: policy::retire_before(server.idle_limit),
                epoch: self.signals.epoch(),
                role_epoch,
                role_checked: now,
                signals: self.signals.clone(),
                watch,
                fd,
                // A tokio runtime does not survive fork(): an async pool is
                // built, and used, in the process that runs it.
                protected: None,
            },
            in_flight,
            socket,
            pending_reset: None,
            committing: false,
        })
    }

    /// Connect, and duplicate the sockets that appeared meanwhile towards
    /// the URL's port.
    async fn establish(&self) -> Result<(C, Vec<OwnedFd>), diesel::ConnectionError> {
        let Some(port) = <C::Dialect as Dialect>::DEFAULT_PORT else {
            return Ok((self.connect().await?, Vec::new()));
        };
        let _one_at_a_time = self.serial.lock().await;
        let before = socket::snapshot();
        let conn = self.connect().await?;
        let after = socket::snapshot();
        let appeared = socket::appeared(&before, &after, socket::peer_of(&self.url, port));
        // Ours at once: the driver may close its descriptor whenever it likes.
        Ok((conn, appeared.into_iter().filter_map(duplicate).collect()))
    }

    /// The driver's connect. Behind a transaction pooler its own set-up
    /// statements may meet the pooler's mix-up (see `pooler.rs`): tried
    /// again at once, a few times.
    async fn connect(&self) -> diesel::ConnectionResult<C> {
        let mut tries = 1;
        loop {
            match C::establish(&self.url).await {
                Err(e) if self.pooler && tries < pooler::SETUP_TRIES && pooler::mixed_up(&e) => {
                    tries += 1;
                    tracing::debug!(target: "db_txn", error = %e, "connect again: the pooler mixed up the set-up's statements");
                }
                other => return other,
            }
        }
    }

    /// The connection's socket among `candidates`, set up for the bounds the
    /// pool applies; `None` (and a WARN, once) when it cannot be told.
    async fn identify(
        &self,
        conn: &mut C,
        mut candidates: Vec<OwnedFd>,
    ) -> Result<Option<OwnedFd>, ConnectError> {
        let Some(port) = <C::Dialect as Dialect>::DEFAULT_PORT else {
            return Ok(None);
        };
        let socket = if candidates.len() == 1 {
            candidates.pop()
        } else if candidates.is_empty() || self.pooler {
            // Behind a pooler the server sees the pooler's port, not ours.
            None
        } else {
            // Another socket to the same port appeared at the same moment:
            // the server's view of our port decides.
            let ports = conn.socket_ports().await.map_err(ConnectError::Setup)?;
            let mut mine: Vec<OwnedFd> = candidates
                .into_iter()
                .filter(|fd| {
                    ports.is_some_and(|(client, _)| {
                        socket::local_port(fd.as_raw_fd()) == Some(client)
                    })
                })
                .collect();
            if mine.len() == 1 {
                mine.pop()
            } else {
                None
            }
        };
        let Some(socket) = socket else {
            self.signals.warn_once(
                Warning::NoSocket,
                "the socket of a new connection could not be identified: a statement that gets \
                 no answer on it is bounded only by TCP itself (mysql_async switches a local \
                 connection to the unix socket unless the URL says `prefer_socket=false`)",
            );
            return Ok(None);
        };
        let user_tcp_settings =
            self.url.contains("keepalives") || self.url.contains("tcp_user_timeout");
        if let (Some(idle), false, Peer::Tcp(_)) = (
            self.keepalive,
            user_tcp_settings,
            socket::peer_of(&self.url, port),
        ) {
            if !socket::set_keepalive(socket.as_raw_fd(), idle) {
                self.signals.warn_once(
                    Warning::NoKeepalive,
                    "TCP keepalive could not be set on a new connection: a link that dies \
                     silently while idle is found only by the checkout ping",
                );
            }
        }
        Ok(Some(socket))
    }
}

/// A descriptor of our own for the socket behind `fd`.
fn duplicate(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC makes a new descriptor (or fails); it does not
    // touch `fd`, which stays the driver's.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
}
