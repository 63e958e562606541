//! Opening one pooled connection: establish, instrument, apply the pool's
//! settings and the user's hook, read the server's settings.

use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use diesel::r2d2::Error as R2d2Error;

use super::flags::Flags;
use super::fork;
use super::observer::Observer;
use super::signals::{Signals, Warning};
use super::socket::{self, Peer};
use super::tracked::Tracked;
use super::watchdog::Watchdog;
use super::{Classifier, OnConnect};
use crate::backend::{ConnectSettings, Dialect, TxnConnection};
use crate::stats::Counters;

/// What every new connection of one pool generation is opened with.
pub(crate) struct Connector<C: TxnConnection> {
    pub url: String,
    pub settings: ConnectSettings,
    pub signals: Arc<Signals>,
    pub classifier: Option<Arc<Classifier>>,
    pub on_connect: Option<Arc<OnConnect<C>>>,
    pub watchdog: Option<Watchdog>,
    /// TCP keepalive (and TCP_USER_TIMEOUT) for new connections.
    pub keepalive: Option<Duration>,
    /// Connects of this pool run one at a time, so that the socket that
    /// appears is the new connection's.
    pub serial: Mutex<()>,
}

/// How long a background connect keeps trying before it reports a failure.
const RECONNECT_POLL: Duration = Duration::from_secs(1);

impl<C: TxnConnection> Connector<C> {
    /// Open a connection, polling briefly for a server that is coming back.
    ///
    /// r2d2 waits 200 ms, 400 ms, 800 ms... between failed attempts, but a
    /// server coming back from a restart accepts connections within
    /// milliseconds: poll for it first (on r2d2's worker thread).
    pub(crate) fn connect(&self) -> Result<Tracked<C>, R2d2Error> {
        let started = Instant::now();
        loop {
            match self.open() {
                Err(R2d2Error::ConnectionError(e))
                    if unreachable::<C>(&e) && started.elapsed() < RECONNECT_POLL =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => return other,
            }
        }
    }

    /// Open and prepare one connection.
    pub(crate) fn open(&self) -> Result<Tracked<C>, R2d2Error> {
        let (mut conn, candidates) = self.establish().map_err(R2d2Error::ConnectionError)?;
        let flags = Arc::new(Flags::default());
        let watch = self.watchdog.as_ref().map(Watchdog::watch);
        let stamped = self
            .watchdog
            .as_ref()
            .is_some_and(Watchdog::times_statements);
        conn.set_instrumentation(Observer::<C::Dialect> {
            flags: flags.clone(),
            signals: self.signals.clone(),
            classifier: self.classifier.clone(),
            inner: diesel::connection::get_default_instrumentation(),
            watch: watch.clone().filter(|_| stamped),
            seq: 0,
            _conn: PhantomData,
        });
        conn.prepare(&self.settings)
            .map_err(R2d2Error::QueryError)?;
        if let Some(hook) = &self.on_connect {
            hook(&mut conn).map_err(R2d2Error::QueryError)?;
        }
        // After the hook: a `wait_timeout` it sets is the one that counts.
        let server = conn.server_info().map_err(R2d2Error::QueryError)?;
        let fd = self.identify(&mut conn, candidates)?;
        if let Some(watch) = &watch {
            watch.set_session(server.session_id);
            if let Some(fd) = fd {
                watch.set_socket(fd);
            }
        }
        Counters::bump(&self.signals.counters.opened);
        let now = Instant::now();
        Ok(Tracked {
            conn,
            flags,
            server,
            created: now,
            last_ok: now,
            last_release: now,
            epoch: self.signals.epoch(),
            signals: self.signals.clone(),
            watch,
            fd,
            protected: fd.and_then(fork::protect),
        })
    }

    /// Connect, and list the sockets that appeared meanwhile towards the
    /// URL's port (none for an embedded database).
    fn establish(&self) -> Result<(C, Vec<RawFd>), diesel::ConnectionError> {
        let Some(port) = <C::Dialect as Dialect>::DEFAULT_PORT else {
            return Ok((C::establish(&self.url)?, Vec::new()));
        };
        let _one_at_a_time = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
        let before = socket::snapshot();
        let conn = C::establish(&self.url)?;
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
