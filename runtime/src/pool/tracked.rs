//! A pooled connection with what the checkout policy knows about it (as
//! deadpool keeps a small metrics struct per object).

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Instant;

use super::flags::Flags;
use super::fork::Protected;
use super::signals::Signals;
use super::watchdog::Watch;
use crate::backend::ServerInfo;
use crate::stats::Counters;

pub struct Tracked<C> {
    pub(crate) conn: C,
    pub(crate) flags: Arc<Flags>,
    pub(crate) server: ServerInfo,
    pub(crate) created: Instant,
    /// Last time a transaction committed or a ping succeeded on it.
    pub(crate) last_ok: Instant,
    /// Last time it went back to the pool.
    pub(crate) last_release: Instant,
    /// The pool epoch when it was last known healthy.
    pub(crate) epoch: u64,
    pub(crate) signals: Arc<Signals>,
    pub(crate) watch: Option<Arc<Watch>>,
    /// The connection's socket, when it was identified.
    pub(crate) fd: Option<RawFd>,
    /// Keeps a forked child off the socket.
    pub(crate) protected: Option<Protected>,
}

impl<C> Tracked<C> {
    /// Record a successful use (the ping window starts again).
    pub(crate) fn mark_ok(&mut self) {
        self.last_ok = Instant::now();
        self.epoch = self.signals.epoch();
    }
}

impl<C> Drop for Tracked<C> {
    fn drop(&mut self) {
        // Before `conn` drops and closes its socket: the descriptor may be
        // reused from then on.
        if let Some(watch) = &self.watch {
            watch.closing();
        }
        drop(self.protected.take());
        Counters::bump(&self.signals.counters.closed);
    }
}
