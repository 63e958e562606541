//! A lost connection on purpose, for the retry-safety check
//! ([`RetryCheck`](crate::testing::RetryCheck)): the N-th statement that a
//! call on one thread sends inside its transactions meets a lost connection.
//!
//! The observer of each connection asks [`Faults::armed`] at every statement
//! start: one relaxed load while no check runs. While one runs, the
//! statements the armed thread sends while a body of an annotated call runs
//! (not the checkout's ping, BEGIN or COMMIT, which the runner sends outside
//! the body: a loss at COMMIT is the commit-outcome question, not a retry;
//! nor the COMMIT of a `requires_new` call inside) are counted and logged;
//! at the N-th, the connection is lost:
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
pub(crate) struct Plan {
    thread: ThreadId,
    /// A body of an annotated call runs on this thread now (told by the
    /// caller: the session stack is not this module's).
    in_body: fn() -> bool,
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
    pub(crate) fn arm(&self, at: Option<usize>, in_body: fn() -> bool) -> bool {
        let mut plan = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        if plan.is_some() {
            return false;
        }
        *plan = Some(Plan {
            thread: thread::current().id(),
            in_body,
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

/// One connection's part: its socket.
pub(crate) struct Point {
    /// The connection's socket (-1 while unknown), set once it is found.
    pub socket: Arc<AtomicI32>,
}

impl Point {
    /// A statement starts while a check runs on the pool.
    #[cold]
    #[inline(never)]
    pub(crate) fn statement(&self, sql: &dyn std::fmt::Display, flags: &Flags, signals: &Signals) {
        let faults = &signals.faults;
        let mut plan = faults.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(plan) = plan.as_mut() else { return };
        if plan.thread != thread::current().id() || !(plan.in_body)() {
            return; // another thread; a ping, BEGIN, COMMIT, the session's set-up
        }
        if is_commit(sql) {
            return; // of a `requires_new` call inside: the commit-outcome question
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

/// `COMMIT` as diesel sends it (`COMMIT`, `COMMIT TRANSACTION`).
fn is_commit(sql: &dyn std::fmt::Display) -> bool {
    let text = sql.to_string();
    let text = text.trim_start();
    text.get(..6)
        .is_some_and(|word| word.eq_ignore_ascii_case("COMMIT"))
}
