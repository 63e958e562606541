//! A pooled connection with what the checkout policy knows about it (as
//! deadpool keeps a small metrics struct per object).

use std::os::fd::RawFd;
use std::sync::Arc;

use super::clock::Ms;
use super::flags::Flags;
use super::fork::Protected;
use super::signals::Signals;
use super::watchdog::Watch;
use crate::backend::ServerInfo;
use crate::stats::Counters;

/// `repr(C)`, aligned to a cache line: what the checkout, the runner and
/// the return read or write on every call comes first, in two lines, before
/// the server's facts and the driver's connection.
#[repr(C, align(64))]
pub struct Tracked<C> {
    pub(crate) flags: Arc<Flags>,
    pub(crate) signals: Arc<Signals>,
    /// When the last checkout judged it (when it opened, before any).
    pub(crate) judged: Ms,
    /// Last time it was known healthy: the checkout of a call that
    /// committed, or a ping that succeeded.
    pub(crate) last_ok: Ms,
    /// When it last went back to the pool, as the time of the checkout that
    /// it returned from: the clock is read once per call, at checkout, and
    /// an idle time measured from the checkout errs on the long side (an
    /// earlier retirement, an earlier ping), never on the short one.
    pub(crate) last_release: Ms,
    pub(crate) created: Ms,
    /// Retired unpinged once idle this long (ms): before the server's own
    /// idle limit (`wait_timeout`, read at connect).
    pub(crate) retire_idle: u64,
    /// The pool epoch when it was last known healthy.
    pub(crate) epoch: u64,
    /// The pool's role epoch when its role was last checked, and when.
    pub(crate) role_epoch: u64,
    pub(crate) role_checked: Ms,
    /// A transaction committed since checkout: `last_ok` moves to the
    /// checkout's time at the return.
    pub(crate) ok: bool,
    /// The checkout that takes it next was judged without a ping: it is
    /// counted once, as a skipped ping (see [`Counters::checked_out`]).
    pub(crate) trusted: bool,
    /// No instrumentation of the user's watches the connection (only the
    /// pool's observer): the runner may send BEGIN and COMMIT the driver's
    /// own way ([`Driver::begin_top_level`](crate::backend::Driver::begin_top_level)).
    pub(crate) direct: bool,
    /// The connection's socket, when it was identified.
    pub(crate) fd: Option<RawFd>,
    pub(crate) watch: Option<Arc<Watch>>,
    pub(crate) server: ServerInfo,
    /// Keeps a forked child off the socket.
    pub(crate) protected: Option<Protected>,
    pub(crate) conn: C,
}

impl<C> Tracked<C> {
    /// Judged at checkout at `now`.
    #[inline]
    pub(crate) fn judged_at(&mut self, now: Ms) -> Ms {
        self.judged = now;
        now
    }

    /// Back in the pool: a successful use starts the ping window again,
    /// from the checkout's time (see `last_release`).
    #[inline]
    pub(crate) fn returned(&mut self) {
        let at = self.judged;
        self.last_release = at;
        if std::mem::take(&mut self.ok) {
            self.last_ok = at;
            self.epoch = self.signals.epoch();
        }
    }

    /// When it was opened, as an `Instant` (from the pool's coarse clock).
    pub(crate) fn opened(&self) -> std::time::Instant {
        let age =
            std::time::Duration::from_millis(super::clock::now().0.saturating_sub(self.created.0));
        std::time::Instant::now()
            .checked_sub(age)
            .unwrap_or_else(std::time::Instant::now)
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
