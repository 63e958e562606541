//! What a pool knows about each of its read replicas, shared by the sync
//! pool (`replicas.rs`) and the async pool (`asynk/pool/replicas.rs`): when
//! a replica that failed is tried again, how far it was last seen to have
//! replayed, whether it was just found behind, in which order a read tries
//! the replicas, and what the answer of a read-your-writes wait means.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::backend::{Position, Replay};
use crate::Error;

/// How long a replica that failed is left out, at first and at most.
const LEFT_OUT: Duration = Duration::from_secs(1);
const LEFT_OUT_MAX: Duration = Duration::from_secs(30);
/// How long a replica found behind a read's floor is not waited for again:
/// a read that needs more than it is known to show goes to the primary at
/// once (the others it still serves).
const BEHIND_PAUSE: Duration = Duration::from_secs(1);

/// The health of one replica, behind a lock of its own.
pub(crate) struct ReplicaHealth {
    /// The replica's URL without its password, for messages.
    server: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Left out until then.
    out_until: Option<Instant>,
    failures: u32,
    /// The latest position this replica was seen to show.
    shows: Option<Position>,
    /// Not waited for until then: it was found behind.
    behind_until: Option<Instant>,
}

/// What to do after a replica answered a read-your-writes wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterWait {
    /// It shows the floor: the read runs there.
    Serve,
    /// It is behind: the read runs on the primary.
    Primary,
    /// The connection is unusable (closed, or the replica was promoted):
    /// discard it and try the next replica. `promoted` moves the replica
    /// pool's role epoch.
    Next { promoted: bool },
}

impl ReplicaHealth {
    pub(crate) fn new(server: String) -> Self {
        ReplicaHealth {
            server,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this replica may serve now. A replica left out until a time
    /// now past is tried by this read alone: the others keep skipping it
    /// until its answer (at most `timeout`).
    pub(crate) fn take_turn(&self, timeout: Duration) -> bool {
        let mut h = self.state();
        match h.out_until {
            None => true,
            Some(until) => {
                let now = Instant::now();
                if now < until {
                    return false;
                }
                h.out_until = Some(now + timeout);
                true
            }
        }
    }

    /// Found behind a moment ago: not worth waiting for now.
    pub(crate) fn behind(&self) -> bool {
        self.state()
            .behind_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// Whether it was seen to show everything up to `floor`.
    pub(crate) fn shows(&self, floor: &Position) -> bool {
        self.state().shows.as_ref().is_some_and(|p| p.covers(floor))
    }

    /// What a read that must see `floor` does after the replica's answer to
    /// the wait (`Err`: the wait's error, as text).
    pub(crate) fn after_wait(&self, floor: &Position, answer: Result<Replay, String>) -> AfterWait {
        match answer {
            Ok(Replay::Reached) => {
                self.seen_at(floor);
                self.succeeded();
                AfterWait::Serve
            }
            Ok(Replay::Behind) => {
                tracing::debug!(
                    target: "db_txn",
                    behind = %floor,
                    "replica not caught up with the writes the read must see in time: read on the primary"
                );
                self.succeeded();
                self.state().behind_until = Some(Instant::now() + BEHIND_PAUSE);
                AfterWait::Primary
            }
            Ok(Replay::NotAReplica) => {
                self.failed("no longer a replica (promoted)");
                AfterWait::Next { promoted: true }
            }
            Err(e) => {
                self.failed(&e);
                AfterWait::Next { promoted: false }
            }
        }
    }

    /// A checkout from the replica's pool failed with `e`: left out for a
    /// while, unless the pool was merely busy.
    pub(crate) fn checkout_failed(&self, e: &Error) {
        if !busy(e) {
            self.failed(&e.to_string());
        }
    }

    fn seen_at(&self, position: &Position) {
        let mut h = self.state();
        match &mut h.shows {
            Some(p) => p.merge(position),
            None => h.shows = Some(position.clone()),
        }
    }

    /// It served (or answered a wait).
    pub(crate) fn succeeded(&self) {
        let mut h = self.state();
        if h.failures > 0 {
            tracing::info!(target: "db_txn", server = %self.server, "replica serves again");
        }
        h.failures = 0;
        h.out_until = None;
    }

    fn failed(&self, why: &str) {
        let mut h = self.state();
        h.failures = h.failures.saturating_add(1);
        let left_out = LEFT_OUT
            .saturating_mul(1 << (h.failures - 1).min(5))
            .min(LEFT_OUT_MAX);
        h.out_until = Some(Instant::now() + left_out);
        h.shows = None;
        tracing::warn!(
            target: "db_txn",
            server = %self.server,
            error = why,
            left_out_ms = u64::try_from(left_out.as_millis()).unwrap_or(u64::MAX),
            "replica unavailable: reads go to the primary"
        );
    }
}

/// The order in which a read tries `n` replicas: round-robin from `start`,
/// those already seen at or past `floor` first (no wait there).
pub(crate) fn order<'r, R>(
    set: &'r [R],
    start: usize,
    health: impl Fn(&R) -> &ReplicaHealth,
    floor: Option<&Position>,
) -> Vec<&'r R> {
    let n = set.len();
    let mut order: Vec<&R> = (0..n).map(|i| &set[(start + i) % n]).collect();
    if let Some(floor) = floor {
        order.sort_by_key(|r| !health(r).shows(floor));
    }
    order
}

/// The replica pool is only busy (every connection in use): not a failure.
fn busy(e: &Error) -> bool {
    matches!(
        e,
        Error::Checkout {
            state,
            last_error: None,
            ..
        } if state.exhausted()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::PoolState;

    fn checkout_error(connections: u32, idle: u32, last_error: Option<&str>) -> Error {
        Error::Checkout {
            function: None,
            timeout: Duration::from_millis(1),
            state: PoolState {
                connections,
                idle,
                max_size: 2,
            },
            server: String::new(),
            last_error: last_error.map(str::to_owned),
        }
    }

    #[test]
    fn only_an_exhausted_replica_is_merely_busy() {
        assert!(busy(&checkout_error(2, 0, None)));
        assert!(!busy(&checkout_error(0, 0, None)), "no connection came");
        assert!(!busy(&checkout_error(2, 0, Some("Connection refused"))));
    }

    #[test]
    fn a_wait_decides_where_the_read_runs() {
        let h = ReplicaHealth::new("replica".into());
        let floor = Position::Lsn(10);
        assert!(!h.shows(&floor));
        assert_eq!(h.after_wait(&floor, Ok(Replay::Reached)), AfterWait::Serve);
        assert!(h.shows(&floor) && h.shows(&Position::Lsn(9)));
        assert!(!h.shows(&Position::Lsn(11)));

        assert_eq!(
            h.after_wait(&Position::Lsn(11), Ok(Replay::Behind)),
            AfterWait::Primary
        );
        assert!(h.behind(), "not waited for again at once");
        assert!(h.take_turn(Duration::from_secs(1)), "behind is not down");

        assert_eq!(
            h.after_wait(&floor, Ok(Replay::NotAReplica)),
            AfterWait::Next { promoted: true }
        );
        assert!(!h.take_turn(Duration::from_secs(1)), "left out");
        assert!(!h.shows(&floor), "what it showed is forgotten");
    }

    #[test]
    fn replicas_known_to_show_the_floor_come_first() {
        let set = [
            ReplicaHealth::new("a".into()),
            ReplicaHealth::new("b".into()),
            ReplicaHealth::new("c".into()),
        ];
        let names = |o: Vec<&ReplicaHealth>| o.iter().map(|h| h.server.clone()).collect::<Vec<_>>();
        assert_eq!(names(order(&set, 1, |h| h, None)), ["b", "c", "a"]);
        set[0].after_wait(&Position::Lsn(5), Ok(Replay::Reached));
        assert_eq!(
            names(order(&set, 1, |h| h, Some(&Position::Lsn(5)))),
            ["a", "b", "c"]
        );
    }
}
