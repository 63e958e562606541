//! Opening one pooled connection: establish, instrument, apply the pool's
//! settings and the user's hook, read the server's settings.

use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::r2d2::Error as R2d2Error;

use super::clock;
use super::fault::Point;
use super::flags::Flags;
use super::fork;
use super::gate::ConnectGate;
use super::observer::Observer;
use super::role::{self, Role};
use super::signals::{Signals, Warning};
use super::socket::{self, Peer};
use super::tracked::Tracked;
use super::watchdog::Watchdog;
use super::{Classifier, OnConnect};
use crate::backend::{ConnectSettings, Dialect, TxnConnection};
use crate::stats::Counters;

/// What every new connection of one pool generation is opened with.
/// `repr(C)`: the signals, read at every checkout, come first (see `Manager`).
#[repr(C)]
pub(crate) struct Connector<C: TxnConnection> {
    pub signals: Arc<Signals>,
    pub url: String,
    pub settings: ConnectSettings,
    pub classifier: Option<Arc<Classifier>>,
    pub on_connect: Option<Arc<OnConnect<C>>>,
    pub watchdog: Option<Watchdog>,
    /// TCP keepalive (and TCP_USER_TIMEOUT) for new connections.
    pub keepalive: Option<Duration>,
    /// Connects of this pool run one at a time, and not while its
    /// watchdog's probe connects, so that the socket that appears is the new
    /// connection's (see `gate.rs`).
    pub gate: Arc<ConnectGate>,
    /// The role the server must have.
    pub role: Role,
    /// How long a background connect keeps trying before it reports a
    /// failure ([`RECONNECT_POLL`]; zero for a replica, which is not waited
    /// for: reads go to the primary meanwhile).
    pub reconnect_poll: Duration,
}

/// How long a background connect keeps trying before it reports a failure.
pub(crate) const RECONNECT_POLL: Duration = Duration::from_secs(1);

/// The pause between two tries of a background connect while the server is
/// unreachable: a server back from a restart gets its first connection at
/// most this long (plus one failed try) after it accepts them. A failed try
/// costs the client some 40 µs of CPU on MariaDB and 12 µs on PostgreSQL
/// (refused on loopback), 2 % and 0.6 % of a CPU at this pause. The test
/// kit's copy (`pace::PAUSE`) bounds the fault matrix's failed connects and
/// the benchmark's recovery budget.
/// The async pool's waiting checkouts take turns at this pause too
/// (`asynk/pool/pace.rs`).
pub(crate) const RECONNECT_PAUSE: Duration = Duration::from_millis(2);

impl<C: TxnConnection> Connector<C> {
    /// Open a connection, polling briefly for a server that is coming back.
    ///
    /// r2d2 waits 200 ms, 400 ms, 800 ms... between failed attempts, but a
    /// server coming back from a restart accepts connections within
    /// milliseconds: poll for it first (on r2d2's worker thread).
    pub(crate) fn connect(&self) -> Result<Box<Tracked<C>>, R2d2Error> {
        let started = Instant::now();
        loop {
            let opened = self.open();
            if opened.is_err() {
                Counters::bump(&self.signals.counters.connect_failures);
            }
            match opened {
                Err(R2d2Error::ConnectionError(e))
                    if unreachable::<C>(&e) && started.elapsed() < self.reconnect_poll =>
                {
                    std::thread::sleep(RECONNECT_PAUSE);
                }
                // During a failover a server of the right role is about to
                // appear (a promotion, an address moving).
                Err(R2d2Error::ConnectionError(diesel::ConnectionError::BadConnection(m)))
                    if role::is_refusal(&m) && started.elapsed() < self.reconnect_poll =>
                {
                    std::thread::sleep(role::ROLE_POLL);
                }
                other => return other,
            }
        }
    }

    /// Open and prepare one connection.
    pub(crate) fn open(&self) -> Result<Box<Tracked<C>>, R2d2Error> {
        let (mut conn, candidates) = self.establish().map_err(R2d2Error::ConnectionError)?;
        let pooler = self.settings.transaction_pooler;
        if pooler {
            // A named statement prepared in one transaction is another
            // client's (or missing) in the next: prepare nothing to keep.
            conn.set_prepared_statement_cache_size(diesel::connection::CacheSize::Disabled);
        }
        let flags = Arc::new(Flags::default());
        let watch = self.watchdog.as_ref().map(|w| w.watch(&flags));
        let stamped = self
            .watchdog
            .as_ref()
            .is_some_and(Watchdog::times_statements);
        let socket = Arc::new(AtomicI32::new(-1));
        conn.set_instrumentation(Observer::<C::Dialect> {
            flags: flags.clone(),
            signals: self.signals.clone(),
            classifier: self.classifier.clone(),
            inner: diesel::connection::get_default_instrumentation(),
            stamps: watch.is_some() && stamped,
            seq: 0,
            fault: Point {
                socket: socket.clone(),
            },
            _conn: PhantomData,
        });
        conn.prepare(&self.settings)
            .map_err(R2d2Error::QueryError)?;
        if let Some(hook) = &self.on_connect {
            hook(&mut conn).map_err(R2d2Error::QueryError)?;
        }
        // After the hook, which may have set instrumentation of its own in
        // place of the observer.
        let direct = conn
            .instrumentation()
            .downcast_ref::<Observer<C::Dialect>>()
            .is_some_and(|observer| observer.inner.is_none());
        // After the hook: a `wait_timeout` it sets is the one that counts.
        let mut server = conn.server_info().map_err(R2d2Error::QueryError)?;
        if !self.role.accepts(server.role) {
            return Err(R2d2Error::ConnectionError(
                diesel::ConnectionError::BadConnection(self.role.refusal(server.role)),
            ));
        }
        if pooler {
            // Each transaction may run on another server session: the
            // liveness probe can only ask whether the server answers at all.
            server.behind_pooler = true;
            server.session_id = None;
        }
        let fd = self.identify(&mut conn, candidates)?;
        if let Some(fd) = fd {
            socket.store(fd, Relaxed);
        }
        if let Some(watch) = &watch {
            watch.set_session(server.session_id);
            if let Some(fd) = fd {
                watch.set_socket(fd);
            }
        }
        Counters::bump(&self.signals.counters.opened);
        let now = clock::now();
        Ok(Box::new(Tracked {
            conn,
            flags,
            server,
            created: now,
            last_ok: now,
            ok: false,
            last_release: now,
            judged: now,
            trusted: false,
            direct,
            retire_idle: super::policy::retire_before(server.idle_limit),
            epoch: self.signals.epoch(),
            role_epoch: self.signals.role_epoch(),
            role_checked: now,
            signals: self.signals.clone(),
            watch,
            fd,
            protected: fd.and_then(fork::protect),
        }))
    }

    /// Connect, and list the sockets that appeared meanwhile towards the
    /// URL's port (none for an embedded database).
    fn establish(&self) -> Result<(C, Vec<RawFd>), diesel::ConnectionError> {
        let Some(port) = <C::Dialect as Dialect>::DEFAULT_PORT else {
            return Ok((crate::backend::establish::<C>(&self.url)?, Vec::new()));
        };
        let _one_at_a_time = self.gate.pool();
        let before = socket::snapshot();
        let conn = crate::backend::establish::<C>(&self.url)?;
        let after = socket::snapshot();
        Ok((
            conn,
            socket::appeared(&before, &after, socket::peer_of(&self.url, port)),
        ))
    }

    /// The connection's socket among `candidates`, set up for the bounds the
    /// pool applies; `None` (and a WARN, once) when it cannot be told.
    fn identify(&self, conn: &mut C, candidates: Vec<RawFd>) -> Result<Option<RawFd>, R2d2Error> {
        let Some(port) = <C::Dialect as Dialect>::DEFAULT_PORT else {
            return Ok(None);
        };
        let fd = match candidates.as_slice() {
            [fd] => Some(*fd),
            [] => None,
            several => {
                // Another socket to the same port appeared at the same moment:
                // the server's view of our port decides (direct connections).
                let ports = conn.socket_ports().map_err(R2d2Error::QueryError)?;
                let mine: Vec<RawFd> = several
                    .iter()
                    .copied()
                    .filter(|fd| {
                        ports.is_some_and(|(client, _)| socket::local_port(*fd) == Some(client))
                    })
                    .collect();
                (mine.len() == 1).then(|| mine[0])
            }
        };
        let Some(fd) = fd else {
            self.signals.warn_once(
                Warning::NoSocket,
                "the socket of a new connection could not be identified: a statement that gets \
                 no answer on it is bounded only by TCP itself (see the crate docs: what bounds \
                 what)",
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
            if !socket::set_keepalive(fd, idle) {
                self.signals.warn_once(
                    Warning::NoKeepalive,
                    "TCP keepalive could not be set on a new connection: a link that dies \
                     silently while idle is found only by the checkout ping",
                );
            }
        }
        Ok(Some(fd))
    }
}

/// Whether a failed connect means "no server there yet".
fn unreachable<C: TxnConnection>(e: &diesel::ConnectionError) -> bool {
    match e {
        diesel::ConnectionError::BadConnection(msg) => <C::Dialect as Dialect>::unreachable(msg),
        _ => false,
    }
}
