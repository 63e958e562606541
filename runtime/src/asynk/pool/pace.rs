//! While the server is unreachable, the checkouts that wait for it take
//! turns at connecting: one try per pause for the whole pool, however many
//! wait, and every one of them tries again the moment one gets a
//! connection.
//!
//! The pause is the sync pool's ([`RECONNECT_PAUSE`], 2 ms) for the first
//! [`RECONNECT_POLL`] (1 s) of an outage, so that a server back from a
//! restart is found within a pause, as the sync pool's background connect
//! finds it; then it doubles up to [`MAX_PAUSE`]. Before, each waiting
//! checkout kept its own pause, doubling from 2 ms to 100 ms: a lone caller
//! found a server that had been down for 130 ms or more up to 100 ms after
//! it was back, and a hundred waiting callers tried a hundred times as
//! often as one.
//!
//! Only a failed checkout comes here: a checkout that gets a connection at
//! once touches nothing of this.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::pool::connect::{RECONNECT_PAUSE, RECONNECT_POLL};

/// The longest pause between two tries, late in an outage.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// A failure this long after the last one starts a new outage: while one
/// lasts, the waiting checkouts report one at least every [`MAX_PAUSE`].
const OUTAGE_GAP: Duration = Duration::from_millis(250);

pub(super) struct ReconnectPace {
    turns: Mutex<Turns>,
    /// Wakes the waiting checkouts when one got a connection.
    back: Notify,
}

#[derive(Clone, Copy)]
struct Turns {
    /// When the outage began (its first failure).
    since: Instant,
    /// The last failure reported; `None` when the server answered since.
    last_failure: Option<Instant>,
    /// The earliest start of the next try handed out.
    next: Instant,
}

impl ReconnectPace {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        ReconnectPace {
            turns: Mutex::new(Turns {
                since: now,
                last_failure: None,
                next: now,
            }),
            back: Notify::new(),
        }
    }

    /// A connect failed at `now`: when this checkout may try again.
    pub(super) fn turn_after_failure(&self, now: Instant) -> Instant {
        // Never held across an await, nor while anything can panic.
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.failed(now)
    }

    /// A checkout that had failed got a connection: the others try now.
    pub(super) fn server_back(&self) {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.last_failure = None;
        drop(turns);
        self.back.notify_waiters();
    }

    /// Waits until `turn`, or `deadline` if sooner, or until another
    /// checkout got a connection.
    pub(super) async fn wait(&self, turn: Instant, deadline: Instant) {
        // Registered before the sleep: a `server_back` from now on wakes it.
        let back = self.back.notified();
        let _ = tokio::time::timeout_at(turn.min(deadline), back).await;
    }
}

impl Turns {
    fn failed(&mut self, now: Instant) -> Instant {
        let new_outage = self
            .last_failure
            .is_none_or(|last| now.saturating_duration_since(last) > OUTAGE_GAP);
        if new_outage {
            self.since = now;
            self.next = now;
        }
        self.last_failure = Some(now);
        let pause = pause_after(now.saturating_duration_since(self.since));
        let turn = self.next.max(now + pause);
        self.next = turn + pause;
        turn
    }
}

/// The pause between two tries, `outage` into an outage.
fn pause_after(outage: Duration) -> Duration {
    let Some(beyond) = outage.checked_sub(RECONNECT_POLL) else {
        return RECONNECT_PAUSE;
    };
    // Doubling every RECONNECT_POLL / 4 beyond the first RECONNECT_POLL.
    let doublings = (beyond.as_millis() / (RECONNECT_POLL.as_millis() / 4).max(1)).min(16);
    (RECONNECT_PAUSE * 2u32.pow(doublings as u32 + 1)).min(MAX_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn turns(at: Instant) -> Turns {
        Turns {
            since: at,
            last_failure: None,
            next: at,
        }
    }

    #[test]
    fn one_waiter_tries_every_pause_in_the_first_second() {
        let t0 = Instant::now();
        let mut t = turns(t0);
        let mut now = t0;
        for _ in 0..400 {
            let turn = t.failed(now);
            assert_eq!(turn - now, RECONNECT_PAUSE, "at {:?}", now - t0);
            // The try itself takes a while, then fails again.
            now = turn + Duration::from_micros(100);
        }
        assert!(now - t0 < RECONNECT_POLL);
    }

    #[test]
    fn many_waiters_share_one_try_per_pause() {
        let t0 = Instant::now();
        let mut t = turns(t0);
        // Eight checkouts fail at the same moment.
        let mut handed: Vec<Instant> = (0..8).map(|_| t.failed(t0)).collect();
        handed.sort();
        for pair in handed.windows(2) {
            assert_eq!(pair[1] - pair[0], RECONNECT_PAUSE);
        }
        assert_eq!(handed[0] - t0, RECONNECT_PAUSE);
        // The first to try fails again: it queues behind the other seven.
        let again = t.failed(handed[0]);
        assert_eq!(again - handed[7], RECONNECT_PAUSE);
    }

    #[test]
    fn the_pause_grows_after_the_first_second_up_to_the_cap() {
        assert_eq!(pause_after(ms(0)), RECONNECT_PAUSE);
        assert_eq!(pause_after(RECONNECT_POLL - ms(1)), RECONNECT_PAUSE);
        let later: Vec<Duration> = (0..40)
            .map(|k| pause_after(RECONNECT_POLL + ms(100) * k))
            .collect();
        assert!(later[0] > RECONNECT_PAUSE);
        assert!(later.windows(2).all(|w| w[0] <= w[1]), "{later:?}");
        assert_eq!(*later.last().unwrap(), MAX_PAUSE);
    }

    #[test]
    fn a_quiet_spell_or_an_answer_starts_a_new_outage() {
        let t0 = Instant::now();
        let mut t = turns(t0);
        t.failed(t0);
        // Two seconds of failures, every 50 ms: late in the outage.
        let mut now = t0;
        while now - t0 < ms(2000) {
            now += ms(50);
            t.failed(now);
        }
        assert!(t.failed(now) - now > RECONNECT_PAUSE);
        // Nothing failed for a while: the next failure is a new outage.
        let later = now + OUTAGE_GAP + ms(1);
        assert_eq!(t.failed(later) - later, RECONNECT_PAUSE);
        // The server answered: likewise, however soon the next failure.
        let mut t = turns(t0);
        let mut now = t0;
        while now - t0 < ms(2000) {
            now += ms(50);
            t.failed(now);
        }
        t.last_failure = None;
        now += ms(1);
        assert_eq!(t.failed(now) - now, RECONNECT_PAUSE);
    }
}
