//! The pool of a forked child.
//!
//! r2d2 cannot serve after `fork()`: its locks come from parking_lot, whose
//! process-wide table is inherited with entries for the parent's parked
//! worker threads, and the child's first park can hang on them. A child
//! therefore gets this small pool on std's futex-based locks, which keeps no
//! global state. It opens connections on the caller's thread and applies the
//! same checkout policy through the same [`Manager`].

use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use r2d2::ManageConnection;

use super::manager::Manager;
use super::tracked::Tracked;
use crate::backend::TxnConnection;

pub(crate) struct ChildPool<C: TxnConnection> {
    manager: Manager<C>,
    max_size: u32,
    state: Mutex<State<C>>,
    returned: Condvar,
}

struct State<C> {
    idle: Vec<Box<Tracked<C>>>,
    open: u32,
}

/// Why a checkout failed: the last connection error, if any.
pub(crate) type Timeout = Option<String>;

impl<C: TxnConnection> ChildPool<C> {
    pub(crate) fn new(manager: Manager<C>, max_size: u32) -> Arc<Self> {
        Arc::new(ChildPool {
            manager,
            max_size,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(self: &Arc<Self>, timeout: Duration) -> Result<ChildConnection<C>, Timeout> {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        let mut state = self.lock();
        loop {
            if let Some(mut conn) = state.idle.pop() {
                drop(state);
                match self.manager.is_valid(&mut conn) {
                    Ok(()) => return Ok(self.lend(conn)),
                    Err(e) => {
                        last_error = Some(e.to_string());
                        drop(conn);
                        state = self.lock();
                        state.open -= 1;
                        continue;
                    }
                }
            }
            if state.open < self.max_size {
                state.open += 1;
                drop(state);
                match self.connect_within(deadline) {
                    Ok(conn) => return Ok(self.lend(conn)),
                    Err(e) => {
                        last_error = Some(e.to_string());
                        state = self.lock();
                        state.open -= 1;
                        if Instant::now() >= deadline {
                            return Err(last_error);
                        }
                        // Do not hammer an unreachable server.
                        drop(state);
                        std::thread::sleep(Duration::from_millis(50));
                        state = self.lock();
                        continue;
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(last_error);
            }
            state = self
                .returned
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Connect on a thread of its own, so that a server that accepts the TCP
    /// connection but never answers cannot hold the caller past `deadline`.
    /// A connection that arrives after the caller gave up joins the idle ones.
    fn connect_within(
        self: &Arc<Self>,
        deadline: Instant,
    ) -> Result<Box<Tracked<C>>, diesel::r2d2::Error> {
        let (tx, rx) = mpsc::channel();
        let pool = self.clone();
        let spawned = thread::Builder::new()
            .name("db_txn-connect".into())
            .spawn(move || {
                if let Err(mpsc::SendError(Ok(late))) = tx.send(pool.manager.connect()) {
                    pool.put_back(late);
                } else {
                    // Failed late, or delivered: nothing more to do here.
                }
            });
        if let Err(e) = spawned {
            return Err(diesel::r2d2::Error::ConnectionError(
                diesel::ConnectionError::BadConnection(format!(
                    "cannot start a connect thread: {e}"
                )),
            ));
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(result) => result,
            Err(_) => Err(diesel::r2d2::Error::ConnectionError(
                diesel::ConnectionError::BadConnection(
                    "the server accepted no connection in time".into(),
                ),
            )),
        }
    }

    fn lend(self: &Arc<Self>, conn: Box<Tracked<C>>) -> ChildConnection<C> {
        ChildConnection {
            conn: Some(conn),
            pool: self.clone(),
        }
    }

    fn put_back(&self, mut conn: Box<Tracked<C>>) {
        let broken = self.manager.has_broken(&mut conn);
        let mut state = self.lock();
        if broken {
            state.open -= 1;
            drop(state);
            drop(conn);
        } else {
            state.idle.push(conn);
            drop(state);
        }
        self.returned.notify_one();
    }

    /// (open, idle)
    pub(crate) fn state(&self) -> (u32, u32) {
        let state = self.lock();
        (state.open, state.idle.len() as u32)
    }
}

/// A connection checked out of a [`ChildPool`].
pub(crate) struct ChildConnection<C: TxnConnection> {
    conn: Option<Box<Tracked<C>>>,
    pool: Arc<ChildPool<C>>,
}

impl<C: TxnConnection> ChildConnection<C> {
    pub(crate) fn tracked(&mut self) -> &mut Tracked<C> {
        self.conn.as_mut().expect("present until dropped")
    }
    pub(crate) fn tracked_ref(&self) -> &Tracked<C> {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl<C: TxnConnection> Drop for ChildConnection<C> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.put_back(conn);
        }
    }
}
