//! A lost connection on purpose, for the retry-safety check
//! ([`RetryCheck`](crate::testing::RetryCheck)): the N-th statement that a
//! call on one thread sends inside its transactions meets a lost connection.
//!
//! The observer of each connection asks [`Faults::armed`] at every statement
//! start: one relaxed load while no check runs. While one runs, the
//! statements of the armed thread sent inside a transaction (from the first
//! statement after BEGIN to the last before the top-level COMMIT or
//! ROLLBACK: pings and session set-up are not counted, nor is COMMIT, whose
//! loss is the commit-outcome question and not a retry) are counted and
//! logged; at the N-th, the connection is lost:
//!
//! * with its socket known (MariaDB/MySQL, PostgreSQL, on Linux), the socket
//!   is shut down just before the statement is sent: the statement fails as
//!   on a real loss and the server ends the session, rolling back;
//! * otherwise (SQLite, which has no socket; a socket that was not found),
//!   the loss is simulated: the connection is marked lost, the statement and
//!   the rest of the body still run, and the runner then throws the attempt
//!   away as lost (closing the connection rolls it back) and runs the body
//!   again, as it does when a loss is found only before COMMIT.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, ThreadId};

use super::flags::Flags;
use super::signals::Signals;
use super::socket;
use crate::classify::Disconnect;

/// A pool's retry-safety check, when one runs.
#[derive(Default)]
pub(crate) struct Faults {
    armed: AtomicBool,
    plan: Mutex<Option<Plan>>,
}

/// What one run of a check asks for, and what it met.
#[derive(Debug)]
pub(crate) struct Plan {
    thread: ThreadId,
    /// Lose the connection at this statement (1-based); `None`: only count.
    at: Option<usize>,
    /// The SQL of each statement counted, in order.
    pub log: Vec<String>,
    /// Where the connection was lost, if the run got that far.
    pub injected: Option<Injected>,
}

/// A connection lost on purpose.
#[derive(Debug, Clone)]
pub(crate) struct Injected {
    /// 1-based, among the statements counted.
    pub statement: usize,
    pub sql: String,
    /// Marked lost (no socket to shut down) rather than cut.
    pub simulated: bool,
}

impl Faults {
    /// A check runs on this pool.
    #[inline]
    pub(crate) fn armed(&self) -> bool {
        self.armed.load(Relaxed)
    }

    /// Count the statements of calls on this thread, and lose the connection
    /// at statement `at`. `false` if another check runs on the pool.
    pub(crate) fn arm(&self, at: Option<usize>) -> bool {
        let mut plan = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        if plan.is_some() {
            return false;
        }
        *plan = Some(Plan {
            thread: thread::current().id(),
            at,
            log: Vec::new(),
            injected: None,
        });
        self.armed.store(true, Relaxed);
        true
    }

    /// End the run, with what it met.
    pub(crate) fn disarm(&self) -> Option<Plan> {
        let mut plan = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        self.armed.store(false, Relaxed);
        plan.take()
    }
}

/// A transaction event diesel announced, whose statement comes next.
#[derive(Debug, Clone, Copy, Default)]
enum Next {
    #[default]
    Statement,
    /// BEGIN (depth 1) or SAVEPOINT.
    Begin(u32),
    /// COMMIT/ROLLBACK (depth 1) or RELEASE/ROLLBACK TO SAVEPOINT.
    End(u32),
}

/// One connection's part: its socket, and where its statements are.
pub(crate) struct Point {
    /// The connection's socket (-1 while unknown), set once it is found.
    pub socket: Arc<AtomicI32>,
    next: Next,
    in_transaction: bool,
}

impl Point {
    pub(crate) fn new(socket: Arc<AtomicI32>) -> Self {
        Point {
            socket,
            next: Next::Statement,
            in_transaction: false,
        }
    }

    /// diesel is about to begin a transaction or savepoint (a plain store).
    #[inline]
    pub(crate) fn begin(&mut self, depth: u32) {
        self.next = Next::Begin(depth);
    }

    /// diesel is about to end a transaction or savepoint.
    #[inline]
    pub(crate) fn end(&mut self, depth: u32) {
        self.next = Next::End(depth);
    }

    /// A statement starts while a check runs on the pool.
    #[cold]
    pub(crate) fn statement(
        &mut self,
        sql: &dyn std::fmt::Display,
        flags: &Flags,
        signals: &Signals,
    ) {
        match std::mem::take(&mut self.next) {
            Next::Begin(1) => {
                self.in_transaction = true;
                return;
            }
            Next::End(1) => {
                self.in_transaction = false;
                return;
            }
            _ => {}
        }
        if !self.in_transaction {
            return; // a ping, the session's set-up or reset
        }
        let faults = &signals.faults;
        let mut plan = faults.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(plan) = plan.as_mut() else { return };
        if plan.thread != thread::current().id() {
            return;
        }
        plan.log.push(sql.to_string());
        let n = plan.log.len();
        if plan.at != Some(n) {
            return;
        }
        let fd = self.socket.load(Relaxed);
        let simulated = fd < 0;
        if simulated {
            flags.set_disconnect(Disconnect::Lost, None);
            signals.disconnect_seen();
        } else {
            // The connection is on this thread, inside this statement: its
            // socket is open and stays so until the statement returns.
            socket::shut_down(fd);
        }
        tracing::debug!(
            target: "db_txn",
            statement = n,
            simulated,
            "retry check: connection lost on purpose"
        );
        plan.injected = Some(Injected {
            statement: n,
            sql: sql.to_string(),
            simulated,
        });
    }
}
