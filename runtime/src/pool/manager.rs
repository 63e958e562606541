//! The checkout policy: an r2d2 manager that remembers, per connection, when
//! it was last used successfully and whether a disconnect was seen on it.
//!
//! - A connection on which a disconnect was seen is never handed out again.
//! - A connection used successfully within `ping_window` is handed out without
//!   a ping, unless a disconnect was seen on the pool since (the pool epoch
//!   moved): one dead connection usually means a restart, so every older idle
//!   connection is pinged at its next checkout.
//! - A connection idle longer than the server's idle limit (MariaDB/MySQL
//!   `wait_timeout`, read at connect, minus a margin), `max_idle`, or older
//!   than `max_lifetime` is discarded without a ping.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::r2d2::{Error as R2d2Error, ManageConnection};

use crate::backend::{ConnectSettings, ServerInfo, TxnConnection};
use crate::disconnect::{classify, Disconnect, ErrorClass};
use crate::stats::Counters;
use crate::watchdog::{self, Watch, Watchdog};

/// A user rule run before the built-in classification.
pub(crate) type Classifier = dyn Fn(&diesel::result::Error) -> Option<ErrorClass> + Send + Sync;
/// A user hook run on every new connection.
pub(crate) type OnConnect<C> = dyn Fn(&mut C) -> diesel::QueryResult<()> + Send + Sync;

/// State shared by every connection of one pool.
#[derive(Default)]
pub(crate) struct Signals {
    /// Bumped on every disconnect seen on the pool.
    pub epoch: AtomicU64,
    pub counters: Counters,
}

impl Signals {
    pub(crate) fn disconnect_seen(&self) {
        self.epoch.fetch_add(1, Relaxed);
        Counters::bump(&self.counters.disconnects);
    }
}

/// Flags written by the connection's instrumentation while a query runs.
#[derive(Default)]
pub(crate) struct Flags {
    /// 0: healthy; otherwise 1 + the `Disconnect` seen.
    disconnect: AtomicU8,
    conflict: AtomicU8,
    /// Set when the connection must not be reused for another reason (a
    /// failed ROLLBACK, a failed session reset).
    discard: AtomicU8,
}

const DISCONNECTS: [Disconnect; 7] = [
    Disconnect::GoneAway,
    Disconnect::Lost,
    Disconnect::Killed,
    Disconnect::ServerShutdown,
    Disconnect::IdleTimeout,
    Disconnect::Closed,
    Disconnect::BrokenTransaction,
];

impl Flags {
    pub(crate) fn set_disconnect(&self, d: Disconnect) {
        let code = DISCONNECTS.iter().position(|x| *x == d).unwrap_or(0) as u8 + 1;
        // Keep the first cause.
        let _ = self.disconnect.compare_exchange(0, code, Relaxed, Relaxed);
    }
    pub(crate) fn disconnect(&self) -> Option<Disconnect> {
        match self.disconnect.load(Relaxed) {
            0 => None,
            n => DISCONNECTS.get(usize::from(n) - 1).copied(),
        }
    }
    pub(crate) fn set_discard(&self) {
        self.discard.store(1, Relaxed);
    }
    /// Never hand this connection out again.
    pub(crate) fn unusable(&self) -> bool {
        self.disconnect.load(Relaxed) != 0 || self.discard.load(Relaxed) != 0
    }
    pub(crate) fn take_conflict(&self) -> bool {
        self.conflict.swap(0, Relaxed) != 0
    }
}

/// Watches every query's outcome on one connection (diesel instrumentation),
/// so a disconnect inside the user's body is seen whatever their error type.
struct Observer<C> {
    flags: Arc<Flags>,
    signals: Arc<Signals>,
    classifier: Option<Arc<Classifier>>,
    /// The instrumentation diesel would have installed (`set_default_instrumentation`).
    inner: Option<Box<dyn Instrumentation>>,
    watch: Option<Arc<Watch>>,
    _conn: std::marker::PhantomData<fn() -> C>,
}

impl<C: TxnConnection> Instrumentation for Observer<C> {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let Some(watch) = &self.watch {
            match &event {
                InstrumentationEvent::StartQuery { .. } => watch.statement_started(),
                InstrumentationEvent::FinishQuery { .. } => watch.statement_finished(),
                _ => {}
            }
        }
        if let InstrumentationEvent::FinishQuery {
            error: Some(err), ..
        } = &event
        {
            let class = self
                .classifier
                .as_ref()
                .and_then(|rule| rule(err))
                .unwrap_or_else(|| classify(C::BACKEND, err));
            match class {
                ErrorClass::Disconnect(d) => {
                    if self.flags.disconnect().is_none() {
                        self.signals.disconnect_seen();
                        tracing::debug!(
                            target: "db_txn",
                            kind = %d,
                            error = %err,
                            "disconnect seen on a statement: the connection will not be reused"
                        );
                    }
                    self.flags.set_disconnect(d);
                }
                ErrorClass::Conflict => self.flags.conflict.store(1, Relaxed),
                ErrorClass::Other => {}
            }
        }
        if let Some(inner) = &mut self.inner {
            inner.on_connection_event(event);
        }
    }
}

/// A pooled connection with what the checkout policy knows about it.
pub struct Tracked<C> {
    pub(crate) conn: C,
    pub(crate) flags: Arc<Flags>,
    pub(crate) server: ServerInfo,
    created: Instant,
    /// Last time a transaction committed or a ping succeeded on it.
    pub(crate) last_ok: Instant,
    /// Last time it went back to the pool.
    last_release: Instant,
    /// The pool epoch when it was last known healthy.
    epoch: u64,
    signals: Arc<Signals>,
    pub(crate) watch: Option<Arc<Watch>>,
}

impl<C> Tracked<C> {
    /// Record a successful use (the ping window starts again).
    pub(crate) fn mark_ok(&mut self) {
        self.last_ok = Instant::now();
        self.epoch = self.signals.epoch.load(Relaxed);
    }
}

impl<C> Drop for Tracked<C> {
    fn drop(&mut self) {
        // Before `conn` drops and closes its socket.
        if let Some(watch) = &self.watch {
            watch.closing();
        }
        Counters::bump(&self.signals.counters.closed);
    }
}

/// How long a background connect keeps trying before it reports a failure.
const RECONNECT_POLL: Duration = Duration::from_secs(1);

/// Whether a failed connect means "no server there yet" (worth polling),
/// rather than a refusal such as a wrong password (not worth repeating).
fn unreachable(e: &diesel::ConnectionError) -> bool {
    const TEXTS: &[&str] = &[
        "Can't connect",                      // MySQL 2002/2003
        "Lost connection",                    // MySQL 2013 during the handshake
        "Connection refused",                 // libpq
        "the database system is starting up", // PostgreSQL 57P03
        "the database system is shutting down",
        "server closed the connection unexpectedly",
    ];
    matches!(e, diesel::ConnectionError::BadConnection(msg) if TEXTS.iter().any(|t| msg.contains(t)))
}

/// Limits after which a connection is retired without being pinged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub ping_window: Duration,
    pub max_idle: Option<Duration>,
    pub max_lifetime: Option<Duration>,
}

/// How long before the server's idle limit a connection is retired.
fn idle_margin(limit: Duration) -> Duration {
    // 10 %, at least 1 s, at most half the limit (for tiny test limits).
    (limit / 10).max(Duration::from_secs(1)).min(limit / 2)
}

pub(crate) struct Manager<C: TxnConnection> {
    pub url: String,
    pub policy: Policy,
    pub settings: ConnectSettings,
    pub signals: Arc<Signals>,
    pub classifier: Option<Arc<Classifier>>,
    pub on_connect: Option<Arc<OnConnect<C>>>,
    pub watchdog: Option<Watchdog>,
}

impl<C: TxnConnection> Manager<C> {
    /// Open and prepare one connection.
    pub(crate) fn open(&self) -> Result<Tracked<C>, R2d2Error> {
        let mut conn = C::establish(&self.url).map_err(R2d2Error::ConnectionError)?;
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
            _conn: std::marker::PhantomData,
        });
        conn.__prepare(&self.settings)
            .map_err(R2d2Error::QueryError)?;
        if let Some(hook) = &self.on_connect {
            hook(&mut conn).map_err(R2d2Error::QueryError)?;
        }
        // After the hook: a `wait_timeout` it sets is the one that counts.
        let server = conn.__server_info().map_err(R2d2Error::QueryError)?;
        if let (Some(watch), Some(_)) = (&watch, stall) {
            self.find_socket(&mut conn, watch)?;
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
            epoch: self.signals.epoch.load(Relaxed),
            signals: self.signals.clone(),
            watch,
        })
    }

    /// Tell the watchdog which socket to shut down if a statement stalls.
    fn find_socket(&self, conn: &mut C, watch: &Watch) -> Result<(), R2d2Error> {
        if self
            .watchdog
            .as_ref()
            .and_then(|w| w.limits().stall)
            .is_none()
        {
            return Ok(());
        }
        let ports = conn.__socket_ports().map_err(R2d2Error::QueryError)?;
        match ports.and_then(|(client, server)| watchdog::find_socket(client, server)) {
            Some(fd) => watch.set_socket(fd),
            None => tracing::debug!(
                target: "db_txn",
                "stall_timeout: no identifiable socket (unix socket or proxy); not watched"
            ),
        }
        Ok(())
    }

    /// Why `t` must be retired without a ping, if it must.
    fn expired(&self, t: &Tracked<C>, now: Instant) -> Option<&'static str> {
        let idle = now.saturating_duration_since(t.last_release);
        if let Some(limit) = t.server.idle_limit {
            if idle + idle_margin(limit) >= limit {
                return Some("idle close to the server's wait_timeout");
            }
        }
        if self.policy.max_idle.is_some_and(|m| idle >= m) {
            return Some("idle longer than max_idle");
        }
        if self
            .policy
            .max_lifetime
            .is_some_and(|m| now.saturating_duration_since(t.created) >= m)
        {
            return Some("older than max_lifetime");
        }
        None
    }
}

impl<C: TxnConnection> ManageConnection for Manager<C> {
    type Connection = Tracked<C>;
    type Error = R2d2Error;

    fn connect(&self) -> Result<Tracked<C>, R2d2Error> {
        // r2d2 waits 200 ms, 400 ms, 800 ms... between failed attempts, but a
        // server coming back from a restart accepts connections within
        // milliseconds: poll for it briefly first, on r2d2's worker thread.
        let started = Instant::now();
        loop {
            match self.open() {
                Err(R2d2Error::ConnectionError(e))
                    if unreachable(&e) && started.elapsed() < RECONNECT_POLL =>
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
                other => return other,
            }
        }
    }

    fn is_valid(&self, t: &mut Tracked<C>) -> Result<(), R2d2Error> {
        let counters = &self.signals.counters;
        if t.flags.unusable() {
            return Err(R2d2Error::QueryError(gone(t.flags.disconnect())));
        }
        let now = Instant::now();
        if let Some(why) = self.expired(t, now) {
            Counters::bump(&counters.recycled);
            tracing::debug!(target: "db_txn", reason = why, "connection recycled without a ping");
            return Err(R2d2Error::QueryError(
                diesel::result::Error::QueryBuilderError(
                    format!("connection recycled: {why}").into(),
                ),
            ));
        }
        let epoch = self.signals.epoch.load(Relaxed);
        if t.epoch == epoch && now.saturating_duration_since(t.last_ok) < self.policy.ping_window {
            Counters::bump(&counters.pings_skipped);
            tracing::trace!(target: "db_txn", "ping skipped: used successfully just now");
            return Ok(());
        }
        Counters::bump(&counters.pings);
        tracing::trace!(target: "db_txn", "ping");
        t.conn.ping().map_err(R2d2Error::QueryError)?;
        t.last_ok = Instant::now();
        t.epoch = epoch;
        Ok(())
    }

    fn has_broken(&self, t: &mut Tracked<C>) -> bool {
        // Unlike diesel's manager, a panicking thread does not break the
        // connection: the runner rolls back before it unwinds further.
        t.last_release = Instant::now();
        let broken = t.flags.unusable() || t.conn.is_broken();
        if broken {
            tracing::info!(
                target: "db_txn",
                cause = t.flags.disconnect().map_or("unusable after a failed rollback or reset".into(), |d| d.to_string()),
                "connection invalidated: closed instead of returned to the pool"
            );
        }
        broken
    }
}

/// A diesel error standing for a disconnect seen earlier on the connection.
pub(crate) fn gone(d: Option<Disconnect>) -> diesel::result::Error {
    let msg = match d {
        Some(d) => format!("connection lost earlier: {d}"),
        None => "connection discarded after a failed ROLLBACK or reset".to_owned(),
    };
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::ClosedConnection,
        Box::new(msg),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_ten_percent_within_bounds() {
        assert_eq!(
            idle_margin(Duration::from_secs(28800)),
            Duration::from_secs(2880)
        );
        assert_eq!(idle_margin(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(
            idle_margin(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn flags_keep_the_first_disconnect() {
        let f = Flags::default();
        assert_eq!(f.disconnect(), None);
        f.set_disconnect(Disconnect::Killed);
        f.set_disconnect(Disconnect::Lost);
        assert_eq!(f.disconnect(), Some(Disconnect::Killed));
        for d in DISCONNECTS {
            let f = Flags::default();
            f.set_disconnect(d);
            assert_eq!(f.disconnect(), Some(d));
        }
    }
}
