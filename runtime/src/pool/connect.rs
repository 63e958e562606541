//! Opening one pooled connection: establish, instrument, apply the pool's
//! settings and the user's hook, read the server's settings.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::r2d2::Error as R2d2Error;

use super::flags::Flags;
use super::observer::Observer;
use super::signals::Signals;
use super::tracked::Tracked;
use super::watchdog::{self, Watch, Watchdog};
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
        let mut conn =
            crate::backend::establish::<C>(&self.url).map_err(R2d2Error::ConnectionError)?;
        let flags = Arc::new(Flags::default());
        let watch = self.watchdog.as_ref().map(Watchdog::watch);
        // Statements are timed only when a stall timeout asks for it.
        let stall = self.watchdog.as_ref().and_then(|w| w.limits().stall);
        conn.set_instrumentation(Observer::<C> {
            flags: flags.clone(),
            signals: self.signals.clone(),
            classifier: self.classifier.clone(),
            inner: diesel::connection::get_default_instrumentation(),
            watch: stall.and(watch.clone()),
            _conn: PhantomData,
        });
        conn.prepare(&self.settings)
            .map_err(R2d2Error::QueryError)?;
        if let Some(hook) = &self.on_connect {
            hook(&mut conn).map_err(R2d2Error::QueryError)?;
        }
        // After the hook: a `wait_timeout` it sets is the one that counts.
        let server = conn.server_info().map_err(R2d2Error::QueryError)?;
        if let (Some(watch), Some(_)) = (&watch, stall) {
            find_socket(&mut conn, watch)?;
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
        })
    }
}

/// Whether a failed connect means "no server there yet".
fn unreachable<C: TxnConnection>(e: &diesel::ConnectionError) -> bool {
    match e {
        diesel::ConnectionError::BadConnection(msg) => <C::Dialect as Dialect>::unreachable(msg),
        _ => false,
    }
}

/// Tell the watchdog which socket to shut down if a statement stalls.
fn find_socket<C: TxnConnection>(conn: &mut C, watch: &Watch) -> Result<(), R2d2Error> {
    let ports = conn.socket_ports().map_err(R2d2Error::QueryError)?;
    match ports.and_then(|(client, server)| watchdog::find_socket(client, server)) {
        Some(fd) => watch.set_socket(fd),
        None => tracing::debug!(
            target: "db_txn",
            "stall_timeout: no identifiable socket (unix socket or proxy); not watched"
        ),
    }
    Ok(())
}
