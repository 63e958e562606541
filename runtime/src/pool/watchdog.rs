//! A thread per pool that watches what the database driver cannot: a
//! statement that gets no answer (a frozen server, a link that died
//! silently), and a connection held too long (a leak).
//!
//! diesel offers no client-side read timeout, so a statement on a frozen
//! server or a black-holed link blocks until TCP gives up, which can take
//! many minutes. Every pooled connection whose socket was found (see
//! `socket.rs`) is watched, by default:
//!
//! * A statement still waiting after `liveness_check_after` (500 ms for the
//!   checkout ping) makes the watchdog ask the server, over a connection of
//!   its own, whether the session is busy (`probe.rs`). Busy: a long
//!   statement, left alone and asked about again later. Idle or unknown to
//!   the server: its answer was lost, so the socket is shut down (after a
//!   short grace, in case the answer was on its way). No answer within
//!   `liveness_probe_timeout`, or nobody listening: the server is frozen or
//!   unreachable, and the socket is shut down.
//! * With `stall_timeout` set, a statement waiting longer is cut without
//!   asking.
//!
//! A shut-down socket makes the client library report a lost connection,
//! which the runner treats like any other: a retry before COMMIT, the commit
//! outcome otherwise. The descriptor is only shut down, never closed, and
//! never after the connection dropped it (both take `Watch::guard`).
//!
//! Statements are stamped with the watchdog's tick, not a clock: two relaxed
//! atomic operations per statement, on the connection's flags (`stamp.rs`),
//! where the watchdog copies its tick each period.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread;
use std::time::Duration;

use super::flags::Flags;
use super::probe::{ProbeError, SessionProbe, SessionState};
use super::signals::{Signals, Warning};
use super::socket;
use super::stamp::{elapsed, Stamp, TICK_MASK};
use crate::stats::Counters;

/// How long the checkout ping may wait before the server is asked about it.
const PING_CHECK_AFTER: Duration = Duration::from_millis(500);
/// After an "idle" answer, how long the statement may still get its answer
/// (it may have been on its way) before it is cut.
const IDLE_GRACE: Duration = Duration::from_millis(500);
/// A busy statement is asked about again after this long.
const BUSY_RECHECK: Duration = Duration::from_secs(5);

/// Limits the watchdog enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Cut a statement waiting this long, without asking.
    pub stall: Option<Duration>,
    /// Ask the server about a statement waiting this long.
    pub check_after: Option<Duration>,
    /// How long the server may take to answer that question.
    pub probe_timeout: Duration,
    /// Report a connection held this long.
    pub leak: Option<Duration>,
}

/// What the watchdog knows about one connection: its [`Stamp`] (inside its
/// flags, where the statements write it), its socket and its session.
pub(crate) struct Watch {
    /// The connection's flags, for their stamp.
    flags: Arc<Flags>,
    /// The socket, while the connection owns it.
    guard: Mutex<Option<RawFd>>,
    /// The server's id of this session, when known.
    session: AtomicU64,
    /// What was last learnt about the statement in flight: (seq, tick, busy).
    judged: Mutex<Option<(u32, u32, bool)>>,
}

impl Watch {
    fn stamp(&self) -> &Stamp {
        &self.flags.stamp
    }

    /// The connection is closing: its descriptor may be reused from now on.
    pub(crate) fn closing(&self) {
        *self.guard.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(crate) fn set_socket(&self, fd: RawFd) {
        *self.guard.lock().unwrap_or_else(PoisonError::into_inner) = Some(fd);
    }

    pub(crate) fn set_session(&self, id: Option<u64>) {
        self.session.store(id.map_or(0, |id| id + 1), Relaxed);
    }

    fn session(&self) -> Option<u64> {
        self.session.load(Relaxed).checked_sub(1)
    }

    fn has_socket(&self) -> bool {
        self.guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Shut the socket down if statement `seq` is still the one in flight.
    fn cut(&self, seq: u32) -> bool {
        let guard = self.guard.lock().unwrap_or_else(PoisonError::into_inner);
        match *guard {
            Some(fd) if self.stamp().in_flight().is_some_and(|(s, _)| s == seq) => {
                socket::shut_down(fd);
                self.stamp().clear();
                true
            }
            _ => false,
        }
    }
}

/// The watchdog of one pool generation; its thread ends when this drops.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
}

struct Shared {
    watched: Mutex<Vec<Weak<Watch>>>,
    limits: Limits,
    period: Duration,
    /// The tick: advanced once per period, copied into every watched stamp.
    clock: AtomicU32,
    signals: Arc<Signals>,
    probe: Option<Arc<dyn SessionProbe>>,
    asking: Mutex<Option<Asking>>,
}

/// A probe in flight.
struct Asking {
    since: u32,
    about: Vec<(Weak<Watch>, u32, u64)>,
    answer: Receiver<Result<Vec<(u64, SessionState)>, ProbeError>>,
}

impl Watchdog {
    /// `None` when there is nothing to watch.
    pub(crate) fn start(
        limits: Limits,
        signals: Arc<Signals>,
        probe: Option<Arc<dyn SessionProbe>>,
    ) -> Option<Watchdog> {
        let check = limits.check_after.filter(|_| probe.is_some());
        let shortest = [
            limits.stall,
            limits.leak,
            check,
            check.map(|c| c.min(PING_CHECK_AFTER)),
        ]
        .into_iter()
        .flatten()
        .min()?;
        let period = (shortest / 5).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let shared = Arc::new(Shared {
            watched: Mutex::new(Vec::new()),
            limits: Limits {
                check_after: check,
                ..limits
            },
            period,
            clock: AtomicU32::new(1),
            signals,
            probe,
            asking: Mutex::new(None),
        });
        let weak = Arc::downgrade(&shared);
        thread::Builder::new()
            .name("db_txn-watchdog".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    shared.clock.fetch_add(1, Relaxed);
                    shared.inspect();
                    drop(shared);
                    thread::sleep(period);
                }
            })
            .ok()?;
        Some(Watchdog { shared })
    }

    /// Watch the connection of `flags`: its stamp gets the tick from now on.
    pub(crate) fn watch(&self, flags: &Arc<Flags>) -> Arc<Watch> {
        flags.stamp.set_tick(self.shared.clock.load(Relaxed));
        let watch = Arc::new(Watch {
            flags: flags.clone(),
            guard: Mutex::new(None),
            session: AtomicU64::new(0),
            judged: Mutex::new(None),
        });
        let mut watched = self
            .shared
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        watched.retain(|w| w.strong_count() > 0);
        watched.push(Arc::downgrade(&watch));
        watch
    }

    /// Whether statements must be stamped (a stall is watched for).
    pub(crate) fn times_statements(&self) -> bool {
        self.shared.limits.stall.is_some() || self.shared.limits.check_after.is_some()
    }
}

impl Shared {
    fn ticks(&self, d: Duration) -> u32 {
        let n = d.as_nanos() / self.period.as_nanos().max(1);
        u32::try_from(n).unwrap_or(u32::MAX).max(1)
    }

    fn inspect(&self) {
        let watched: Vec<Arc<Watch>> = {
            let list = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let now = self.clock.load(Relaxed) & TICK_MASK;
        self.collect_answer(now);
        let mut ask = Vec::new();
        for watch in &watched {
            // The statements of this period are stamped with it.
            watch.stamp().set_tick(now);
            if let Some(leak) = self.limits.leak {
                self.check_leak(watch, leak, now);
            }
            let Some((seq, started)) = watch.stamp().in_flight() else {
                continue;
            };
            let age = elapsed(now, started);
            if let Some(stall) = self.limits.stall {
                if age >= self.ticks(stall) {
                    self.cut(watch, seq, "no answer within stall_timeout");
                    continue;
                }
            }
            let Some(check) = self.limits.check_after else {
                continue;
            };
            let check = if watch.stamp().is_pinging() {
                check.min(PING_CHECK_AFTER)
            } else {
                check
            };
            if age < self.ticks(check) || !watch.has_socket() {
                continue;
            }
            let judged = *watch.judged.lock().unwrap_or_else(PoisonError::into_inner);
            match judged {
                Some((s, at, false)) if s == seq => {
                    if now.wrapping_sub(at) >= self.ticks(IDLE_GRACE)
                        && self.cut(watch, seq, "the server no longer runs the statement")
                    {
                        // The server still holds the session, and its open
                        // transaction's locks, until it notices the dead
                        // link: end it, so the retry does not wait on them.
                        self.end_session(watch);
                    }
                }
                Some((s, at, true))
                    if s == seq && now.wrapping_sub(at) < self.ticks(BUSY_RECHECK) => {}
                _ => ask.push((Arc::downgrade(watch), seq, watch.session())),
            }
        }
        if !ask.is_empty() {
            self.ask(now, ask);
        }
    }

    fn cut(&self, watch: &Watch, seq: u32, why: &'static str) -> bool {
        let cut = watch.cut(seq);
        if cut {
            self.signals.link_cut();
            tracing::warn!(
                target: "db_txn",
                reason = why,
                "connection shut down: its statement was not getting an answer"
            );
        }
        cut
    }

    fn end_session(&self, watch: &Watch) {
        let (Some(probe), Some(id)) = (&self.probe, watch.session()) else {
            return;
        };
        let probe = probe.clone();
        let _ = thread::Builder::new()
            .name("db_txn-end-session".into())
            .spawn(move || {
                if let Err(e) = probe.end_session(id) {
                    tracing::debug!(target: "db_txn", session = id, error = ?e, "could not end the dead session");
                }
            });
    }

    /// Send one probe about `about` unless one is in flight.
    fn ask(&self, now: u32, about: Vec<(Weak<Watch>, u32, Option<u64>)>) {
        let Some(probe) = &self.probe else { return };
        let mut asking = self.asking.lock().unwrap_or_else(PoisonError::into_inner);
        if asking.is_some() {
            return;
        }
        let mut known = Vec::new();
        for (watch, seq, session) in about {
            match session {
                Some(id) => known.push((watch, seq, id)),
                None => {
                    // Only "does the server answer at all" can be asked.
                    self.signals.warn_once(
                        Warning::NoSessionId,
                        "a watched connection has no server session id: a stall is cut only \
                         when the server does not answer",
                    );
                    known.push((watch, seq, u64::MAX));
                }
            }
        }
        let ids: Vec<u64> = known
            .iter()
            .map(|(_, _, id)| *id)
            .filter(|id| *id != u64::MAX)
            .collect();
        let (tx, rx) = mpsc::channel();
        let probe = probe.clone();
        let spawned = thread::Builder::new()
            .name("db_txn-probe".into())
            .spawn(move || {
                let _ = tx.send(probe.states(&ids));
            });
        if spawned.is_ok() {
            *asking = Some(Asking {
                since: now,
                about: known,
                answer: rx,
            });
        }
    }

    fn collect_answer(&self, now: u32) {
        let mut asking = self.asking.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(current) = asking.as_ref() else {
            return;
        };
        let answer = match current.answer.try_recv() {
            Ok(answer) => answer,
            Err(TryRecvError::Empty)
                if now.wrapping_sub(current.since) < self.ticks(self.limits.probe_timeout) =>
            {
                return
            }
            // The probe hangs (a frozen server, a black hole): abandoned.
            Err(_) => Err(ProbeError::Unreachable("no answer in time".into())),
        };
        let Some(current) = asking.take() else { return };
        drop(asking);
        match answer {
            Ok(states) => {
                let states: HashMap<u64, SessionState> = states.into_iter().collect();
                for (watch, seq, id) in current.about {
                    let Some(watch) = watch.upgrade() else {
                        continue;
                    };
                    let busy = match states.get(&id) {
                        Some(SessionState::Idle) => false,
                        // Busy, or no id to ask about: the server answers.
                        _ => true,
                    };
                    *watch.judged.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some((seq, now, busy));
                }
            }
            Err(ProbeError::Answered(e)) => {
                self.signals.warn_once(
                    Warning::ProbeRefused,
                    "the server answers but refuses the liveness probe; stalled statements are \
                     cut only by stall_timeout",
                );
                tracing::debug!(target: "db_txn", error = %e, "liveness probe refused");
                for (watch, seq, _) in current.about {
                    if let Some(watch) = watch.upgrade() {
                        *watch.judged.lock().unwrap_or_else(PoisonError::into_inner) =
                            Some((seq, now, true));
                    }
                }
            }
            Err(ProbeError::Unreachable(e)) => {
                tracing::debug!(target: "db_txn", error = %e, "liveness probe: no server");
                for (watch, seq, _) in current.about {
                    if let Some(watch) = watch.upgrade() {
                        self.cut(&watch, seq, "the server does not answer");
                    }
                }
            }
        }
    }

    /// `now`: this period's tick, as `inspect` read it.
    fn check_leak(&self, watch: &Watch, leak: Duration, now: u32) {
        let stamp = watch.stamp();
        if let Some(ticks) = stamp.held_ticks(now) {
            let held_for = self.period.saturating_mul(ticks);
            let by = stamp.held_by();
            if held_for >= leak && stamp.first_leak_report() {
                Counters::bump(&self.signals.counters.leaks);
                tracing::warn!(
                    target: "db_txn",
                    function = by,
                    held_ms = u64::try_from(held_for.as_millis()).unwrap_or(u64::MAX),
                    "connection held longer than the leak-detection threshold"
                );
            }
        }
    }
}
