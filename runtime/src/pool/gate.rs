//! One pool's connects and its watchdog's probe connects, one at a time.
//!
//! A socket that appears while the pool opens a connection is taken to be
//! that connection's (`socket.rs`). The watchdog's probe opens connections
//! of its own, to the same port, on a thread of its own, and it does so at
//! the very moment a call that lost its link reconnects: it ends the lost
//! server session right after cutting the link. A probe socket that appears
//! while the pool connects cannot be told from the pool's behind a proxy,
//! and the pool's connection would run unwatched (a second silent link then
//! hangs the call).
//!
//! So a probe connects only while no pool connect is between its two
//! snapshots, and a pool connect waits for probes connecting or waiting to.
//! A sync connect cannot be cancelled, and a probe is sent exactly when the
//! server may not answer: every wait here is bounded by the probe's
//! deadline (`liveness_probe_timeout` from when it asked for its turn).
//! * A probe waits for a pool connect at most until its deadline, then
//!   gives up (the watchdog, which abandons a probe at that deadline
//!   anyway, takes it as no answer, as it would take the probe's own
//!   connect hanging).
//! * A pool connect waits for a probe at most until the probe's deadline:
//!   a probe whose connect hangs delays the pool's connects by at most
//!   `liveness_probe_timeout`, not for as long as it hangs. Its socket was
//!   created when its connect began, so it is among the sockets the pool's
//!   connect sees before it starts, and is not taken for the pool's.
//!
//! Pool connects wait for each other without a bound, as they always did
//! (each is bounded by the client library's connect, and the caller's wait
//! by the checkout timeout).

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct ConnectGate {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// A pool connect holds its turn.
    pool: bool,
    /// Probes waiting for their turn or connecting: (id, deadline).
    probes: Vec<(u64, Instant)>,
    next_id: u64,
}

impl State {
    /// The latest deadline of the probes that still count.
    fn probes_until(&mut self, now: Instant) -> Option<Instant> {
        self.probes.retain(|(_, until)| *until > now);
        self.probes.iter().map(|(_, until)| *until).max()
    }
}

/// A pool connect's turn, until dropped.
pub(crate) struct PoolTurn<'g>(&'g ConnectGate);

/// A probe connect's turn, until dropped.
pub(crate) struct ProbeTurn<'g> {
    gate: &'g ConnectGate,
    id: u64,
}

impl ConnectGate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pool's turn to connect: after any other pool connect, and after
    /// the probes waiting or connecting now (each at most until its
    /// deadline).
    pub(crate) fn pool(&self) -> PoolTurn<'_> {
        let mut state = self.lock();
        loop {
            let now = Instant::now();
            let probes = state.probes_until(now);
            state = match (state.pool, probes) {
                (false, None) => {
                    state.pool = true;
                    return PoolTurn(self);
                }
                (false, Some(until)) => {
                    self.changed
                        .wait_timeout(state, until - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                (true, _) => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// A probe's turn to connect, as soon as no pool connect holds one;
    /// `None` when none came within `limit`. The turn lasts at most `limit`
    /// from now for the pool's connects, which wait for it.
    pub(crate) fn probe(&self, limit: Duration) -> Option<ProbeTurn<'_>> {
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        // Waiting already holds back the pool's next connect.
        state.probes.push((id, deadline));
        loop {
            if !state.pool {
                return Some(ProbeTurn { gate: self, id });
            }
            let now = Instant::now();
            if now >= deadline {
                state.probes.retain(|(p, _)| *p != id);
                drop(state);
                self.changed.notify_all();
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

impl Drop for PoolTurn<'_> {
    fn drop(&mut self) {
        self.0.lock().pool = false;
        self.0.changed.notify_all();
    }
}

impl Drop for ProbeTurn<'_> {
    fn drop(&mut self) {
        self.gate.lock().probes.retain(|(p, _)| *p != self.id);
        self.gate.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;

    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn a_pool_connect_waits_for_a_probe_connecting() {
        let gate = ConnectGate::default();
        let probe_done = AtomicBool::new(false);
        thread::scope(|s| {
            let turn = gate.probe(LONG).expect("no pool connect: at once");
            let pool = s.spawn(|| {
                let _turn = gate.pool();
                probe_done.load(Ordering::SeqCst)
            });
            thread::sleep(Duration::from_millis(100));
            probe_done.store(true, Ordering::SeqCst);
            drop(turn);
            assert!(
                pool.join().unwrap(),
                "the pool connected during the probe's"
            );
        });
    }

    #[test]
    fn a_hanging_probe_holds_the_pool_back_until_its_deadline_only() {
        let gate = ConnectGate::default();
        let limit = Duration::from_millis(300);
        let started = Instant::now();
        // Never dropped: a probe whose connect never returns.
        std::mem::forget(gate.probe(limit).expect("at once"));
        drop(gate.pool());
        let waited = started.elapsed();
        assert!(
            waited >= limit - Duration::from_millis(10) && waited < limit * 10,
            "{waited:?}"
        );
        // The expired turn no longer counts.
        let started = Instant::now();
        drop(gate.pool());
        assert!(started.elapsed() < limit, "{:?}", started.elapsed());
    }

    #[test]
    fn a_probe_waits_for_a_pool_connect_and_goes_before_the_next() {
        let gate = ConnectGate::default();
        let order = Mutex::new(Vec::new());
        thread::scope(|s| {
            let first = gate.pool();
            let probe = s.spawn(|| {
                let _turn = gate.probe(LONG).expect("after the pool's connect");
                order.lock().unwrap().push("probe");
                thread::sleep(Duration::from_millis(100));
            });
            // The probe is waiting: the next pool connect goes after it.
            while gate.lock().probes.is_empty() {
                thread::sleep(Duration::from_millis(1));
            }
            let next = s.spawn(|| {
                let _turn = gate.pool();
                order.lock().unwrap().push("pool");
            });
            thread::sleep(Duration::from_millis(50));
            order.lock().unwrap().push("first");
            drop(first);
            probe.join().unwrap();
            next.join().unwrap();
        });
        assert_eq!(*order.lock().unwrap(), ["first", "probe", "pool"]);
    }

    #[test]
    fn a_probe_gives_up_on_a_hanging_pool_connect_at_its_deadline() {
        let gate = ConnectGate::default();
        let _hanging = gate.pool();
        thread::scope(|s| {
            let probe = s.spawn(|| {
                let started = Instant::now();
                let turn = gate.probe(Duration::from_millis(200)).is_some();
                (turn, started.elapsed())
            });
            let (turn, waited) = probe.join().unwrap();
            assert!(!turn);
            assert!(waited >= Duration::from_millis(190), "{waited:?}");
        });
        assert!(gate.lock().probes.is_empty());
    }

    /// The point of the gate: a probe connecting to the same port while the
    /// pool connects cannot put a second socket in the pool's window.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_pool_sees_only_its_own_socket() {
        use super::super::socket::{appeared, snapshot, Peer};
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let gate = ConnectGate::default();
        thread::scope(|s| {
            let turn = gate.pool();
            let before = snapshot();
            let probe = s.spawn(|| {
                let _turn = gate.probe(LONG).expect("after the pool's connect");
                TcpStream::connect(("127.0.0.1", port)).unwrap()
            });
            // The window a slow connect leaves open.
            thread::sleep(Duration::from_millis(100));
            let own = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let after = snapshot();
            drop(turn);
            assert_eq!(
                appeared(&before, &after, Peer::Tcp(port)),
                vec![own.as_raw_fd()]
            );
            drop(probe.join().unwrap());
        });
    }
}
