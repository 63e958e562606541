//! The retry-safety check: a call meets a lost connection at each of its
//! statements in turn, and must end as a clean run does.

use std::fmt::{self, Debug};

use crate::pool::fault::{Faults, Plan};
use crate::{session, Backend, Pool, TxnConnection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Step<'a, C, T> = Box<dyn FnMut(&mut C) -> Result<T, BoxError> + 'a>;

/// A check stops with an error past this many statements in one call.
const MAX_STATEMENTS: usize = 1000;

/// Checks in a unit test that a call stays correct when its connection is
/// lost and `#[db_txn]` runs its body again: the call is run once cleanly,
/// then again with the connection lost at its statement 1, then at its
/// statement 2, and so on until a run meets no loss; each run must return
/// the same value as the clean run and leave the same committed state.
///
/// A body that is not retry-safe fails the check with a message that names
/// the statement at which the connection was lost, its SQL, and the values
/// or states that differ: for example a body that bumps an in-memory
/// counter, sends a message, or inserts a row with an id it takes from a
/// process-wide sequence, all of which happen twice when the body runs
/// twice. (Work in the body outside the database runs again on a retry:
/// move it after the call, or key it by a value computed before the call.)
///
/// Each run is: [`setup`](Self::setup) on a connection of the pool (bring
/// the data, and any in-memory state the check compares, to the same
/// starting point), the call, then [`snapshot`](Self::snapshot) on a
/// connection of the pool (the committed state to compare). The call is
/// yours: typically `|| transfer(1, 2, 30)` with the annotated function
/// using `pool` (installed, installed for the thread, or named by
/// `pool = ...`). Its return value must be `PartialEq + Debug`: map an error
/// type that is not to its message (`.map_err(|e| e.to_string())`).
///
/// Which statements: those sent on connections of `pool` on this thread
/// while the body of an annotated call runs (SAVEPOINTs of joined calls and
/// the statements of `requires_new` calls included, but for their COMMIT).
/// BEGIN and COMMIT are sent by the runner outside the body: a loss at BEGIN
/// is always safe (the body has not run) and a loss at COMMIT is the
/// commit-outcome question
/// ([`Error::CommitUnknown`](crate::Error::CommitUnknown)), not a retry, so
/// neither is tried.
///
/// How the connection is lost:
///
/// * **MariaDB/MySQL, PostgreSQL** (on Linux, where the pool knows each
///   connection's socket): the socket is shut down just before statement N
///   is sent. The statement fails as it does when a server restarts or a
///   proxy cuts the link, the server ends the session and rolls back, and
///   the runner runs the body again on a new connection. A body that
///   swallows that error and goes on is caught too.
/// * **SQLite** (no socket), and a server connection whose socket is not
///   known: the loss is simulated. The connection is marked lost at
///   statement N; the statement and the rest of the body still run, then
///   the runner throws the attempt away as lost (closing the connection
///   rolls it back) and runs the body again, as it does when a server
///   connection closes after the body's last statement and before COMMIT.
///   Work the body does after statement N therefore runs in the lost
///   attempt too, where a real loss mid-body would have stopped it at the
///   failed statement; the check is at least as strict as on a server.
///
/// The call must own its transaction: a check inside [`lend`](crate::lend)
/// or [`test_transaction`](super::test_transaction) is refused (joined calls
/// never retry). Give it a database of its own
/// ([`TestDatabase`](super::TestDatabase)): the runs commit for real.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use db_txn::db_txn;
/// use db_txn::testing::{RetryCheck, TestDatabase};
/// use diesel::connection::SimpleConnection;
/// use diesel::prelude::*;
/// use diesel::SqliteConnection;
///
/// diesel::table! { accounts (id) { id -> Integer, balance -> BigInt } }
///
/// /// Retry-safe: all it does is in the transaction.
/// #[db_txn]
/// fn transfer(conn: &mut SqliteConnection, from: i32, to: i32, n: i64) -> QueryResult<i64> {
///     diesel::update(accounts::table.find(from))
///         .set(accounts::balance.eq(accounts::balance - n))
///         .execute(conn)?;
///     diesel::update(accounts::table.find(to))
///         .set(accounts::balance.eq(accounts::balance + n))
///         .execute(conn)?;
///     accounts::table.find(from).select(accounts::balance).first(conn)
/// }
///
/// static TRANSFERS: AtomicU64 = AtomicU64::new(0);
///
/// /// Not retry-safe: the counter is bumped again when the body runs again.
/// #[db_txn]
/// fn counted_transfer(conn: &mut SqliteConnection, from: i32, to: i32, n: i64) -> QueryResult<u64> {
///     let done = TRANSFERS.fetch_add(1, Ordering::Relaxed) + 1;
///     diesel::update(accounts::table.find(from))
///         .set(accounts::balance.eq(accounts::balance - n))
///         .execute(conn)?;
///     Ok(done)
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let db = TestDatabase::<SqliteConnection>::new()?;
/// let _pool = db_txn::testing::install_for_thread(db.pool().clone());
/// let check = || {
///     RetryCheck::new(db.pool())
///         .setup(|conn: &mut SqliteConnection| {
///             TRANSFERS.store(0, Ordering::Relaxed);
///             conn.batch_execute(
///                 "DROP TABLE IF EXISTS accounts;
///                  CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL);
///                  INSERT INTO accounts VALUES (1, 100), (2, 0)",
///             )
///         })
///         .snapshot(|conn| accounts::table.order(accounts::id).load::<(i32, i64)>(conn))
/// };
///
/// let report = check().run(|| transfer(1, 2, 30).map_err(|e| e.to_string()))?;
/// assert_eq!(report.statements.len(), 3);
///
/// let failure = check()
///     .run(|| counted_transfer(1, 2, 30).map_err(|e| e.to_string()))
///     .unwrap_err();
/// let message = failure.to_string();
/// assert!(message.contains("statement 1 of 1"), "{message}");
/// assert!(message.contains("Ok(2)"), "{message}"); // a clean run returns Ok(1)
/// # Ok(()) }
/// ```
pub struct RetryCheck<'a, C: TxnConnection, S = ()> {
    pool: &'a Pool<C>,
    setup: Option<Step<'a, C, ()>>,
    snapshot: Step<'a, C, S>,
}

impl<C: TxnConnection, S> Debug for RetryCheck<'_, C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryCheck")
            .field("pool", self.pool)
            .field("setup", &self.setup.is_some())
            .finish()
    }
}

impl<'a, C: TxnConnection> RetryCheck<'a, C, ()> {
    /// A check of calls on `pool`, with no set-up and nothing compared but
    /// the value each run returns.
    pub fn new(pool: &'a Pool<C>) -> Self {
        RetryCheck {
            pool,
            setup: None,
            snapshot: Box::new(|_| Ok(())),
        }
    }
}

impl<'a, C: TxnConnection, S: PartialEq + Debug> RetryCheck<'a, C, S> {
    /// Run `setup` before each run, on a connection of the pool: bring the
    /// data (and whatever in-memory state the call or the snapshot reads) to
    /// the same starting point every time. Reset sequences too (`TRUNCATE
    /// ... RESTART IDENTITY`, a new table) when the call returns or stores
    /// generated ids.
    pub fn setup<E: Into<BoxError>>(
        mut self,
        mut setup: impl FnMut(&mut C) -> Result<(), E> + 'a,
    ) -> Self {
        self.setup = Some(Box::new(move |conn| setup(conn).map_err(Into::into)));
        self
    }

    /// Read the committed state to compare after each run, on a connection
    /// of the pool (ordered: `ORDER BY` the key).
    pub fn snapshot<T, E>(
        self,
        mut snapshot: impl FnMut(&mut C) -> Result<T, E> + 'a,
    ) -> RetryCheck<'a, C, T>
    where
        T: PartialEq + Debug,
        E: Into<BoxError>,
    {
        RetryCheck {
            pool: self.pool,
            setup: self.setup,
            snapshot: Box::new(move |conn| snapshot(conn).map_err(Into::into)),
        }
    }

    /// Run the check on `call`; `Ok` with what was tried when every run
    /// ended as the clean one did.
    pub fn run<R: PartialEq + Debug>(
        mut self,
        mut call: impl FnMut() -> R,
    ) -> Result<RetryReport, RetryCheckError> {
        if !session::is_empty() {
            return Err(RetryCheckError::InsideSession);
        }
        let clean = self.once(None, &mut call)?;
        if clean.statements.is_empty() {
            return Err(RetryCheckError::NoStatements {
                backend: self.pool.backend(),
            });
        }
        let again = self.once(None, &mut call)?;
        let value = differs(&clean.value, &again.value);
        let state = differs(&clean.state, &again.state);
        if value.is_some() || state.is_some() {
            return Err(RetryCheckError::NotRepeatable { value, state });
        }
        let mut simulated = false;
        for at in 1..=MAX_STATEMENTS {
            let run = self.once(Some(at), &mut call)?;
            let Some(lost) = run.injected else {
                return Ok(RetryReport {
                    statements: clean.statements,
                    runs: 2 + at,
                    simulated,
                });
            };
            simulated |= lost.simulated;
            let value = differs(&clean.value, &run.value);
            let state = differs(&clean.state, &run.state);
            if value.is_some() || state.is_some() {
                return Err(RetryCheckError::NotRetrySafe(Box::new(RetryUnsafe {
                    statement: lost.statement,
                    statements: clean.statements.len(),
                    sql: lost.sql,
                    backend: self.pool.backend(),
                    simulated: lost.simulated,
                    value,
                    state,
                })));
            }
        }
        Err(RetryCheckError::TooManyStatements {
            limit: MAX_STATEMENTS,
        })
    }

    /// Set up, run the call (losing the connection at statement `at`),
    /// take the snapshot.
    fn once<R>(
        &mut self,
        at: Option<usize>,
        call: &mut impl FnMut() -> R,
    ) -> Result<Run<R, S>, RetryCheckError> {
        if let Some(setup) = &mut self.setup {
            let mut conn = self.pool.get().map_err(RetryCheckError::Pool)?;
            setup(&mut conn).map_err(RetryCheckError::Setup)?;
        }
        let faults = self.pool.faults();
        if !faults.arm(at, || !session::is_empty()) {
            return Err(RetryCheckError::Busy);
        }
        let armed = Armed(faults);
        let value = call();
        let plan = armed.finish().ok_or(RetryCheckError::Busy)?;
        let mut conn = self.pool.get().map_err(RetryCheckError::Pool)?;
        let state = (self.snapshot)(&mut conn).map_err(RetryCheckError::Snapshot)?;
        Ok(Run {
            value,
            state,
            statements: plan.log,
            injected: plan.injected,
        })
    }
}

/// Disarms the pool's check, also when the call panics.
struct Armed<'f>(&'f Faults);

impl Armed<'_> {
    fn finish(self) -> Option<Plan> {
        let plan = self.0.disarm();
        std::mem::forget(self);
        plan
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.disarm();
    }
}

struct Run<R, S> {
    value: R,
    state: S,
    statements: Vec<String>,
    injected: Option<crate::pool::fault::Injected>,
}

fn differs<T: PartialEq + Debug>(clean: &T, other: &T) -> Option<Difference> {
    (clean != other).then(|| Difference {
        clean: format!("{clean:?}"),
        other: format!("{other:?}"),
    })
}

/// What a [`RetryCheck`] tried, when every run ended as the clean one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryReport {
    /// The SQL of each statement of the clean run at which the connection
    /// was lost in turn (diesel's text, with its binds).
    pub statements: Vec<String>,
    /// The call's runs: two clean, then one per statement, and the last,
    /// which met no loss.
    pub runs: usize,
    /// Some loss was simulated (SQLite, or a socket that was not known)
    /// rather than made real.
    pub simulated: bool,
}

impl fmt::Display for RetryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "retry-safe: the connection was lost at each of {} statement(s) in turn ({}), \
             and every run returned what a clean run returns and left the same state",
            self.statements.len(),
            if self.simulated {
                "simulated"
            } else {
                "sockets shut down"
            }
        )
    }
}

/// A value (or committed state) of a run that differs from the clean run's,
/// as `Debug` prints them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Difference {
    /// The clean run's.
    pub clean: String,
    /// This run's.
    pub other: String,
}

/// A call that did not end as a clean run did after its connection was lost
/// at one statement: see [`RetryCheckError::NotRetrySafe`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryUnsafe {
    /// The statement (1-based) at which the connection was lost.
    pub statement: usize,
    /// How many statements a clean run sends.
    pub statements: usize,
    /// The SQL of that statement, with its binds.
    pub sql: String,
    /// The database.
    pub backend: Backend,
    /// The loss was simulated (SQLite; a socket that was not known).
    pub simulated: bool,
    /// The value returned, when it differs.
    pub value: Option<Difference>,
    /// The committed state, when it differs.
    pub state: Option<Difference>,
}

impl fmt::Display for RetryUnsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match (&self.value, &self.state) {
            (Some(_), Some(_)) => "returned a different value and left a different state",
            (Some(_), None) => "returned a different value",
            _ => "left a different committed state",
        };
        write!(
            f,
            "not retry-safe: with the connection lost at statement {} of {} and the body run \
             again, the call {what} than a clean run.\n  statement {}: {}",
            self.statement,
            self.statements,
            self.statement,
            self.sql.trim()
        )?;
        if let Some(d) = &self.value {
            write!(
                f,
                "\n  returned:        {}\n  clean run:       {}",
                d.other, d.clean
            )?;
        }
        if let Some(d) = &self.state {
            write!(
                f,
                "\n  committed state: {}\n  clean run:       {}",
                d.other, d.clean
            )?;
        }
        if self.simulated {
            write!(
                f,
                "\n  ({}: the loss was simulated; the statement and the rest of the body ran, \
                 then the attempt was thrown away and the body ran again)",
                self.backend
            )?;
        }
        f.write_str(
            "\nWork the body does outside the database (counters, messages, ids taken from \
             the process) runs again when the body does: move it after the call, or derive it \
             from values computed before the call.",
        )
    }
}

/// Why a [`RetryCheck`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum RetryCheckError {
    /// The call is not retry-safe: after a loss at one statement it returned
    /// a different value or left a different state than a clean run.
    NotRetrySafe(Box<RetryUnsafe>),
    /// Two clean runs already differ: the set-up does not bring everything
    /// the call depends on back to the same start (an in-memory counter, a
    /// sequence), or the call is not deterministic (time, random ids).
    NotRepeatable {
        /// The values, when they differ.
        value: Option<Difference>,
        /// The committed states, when they differ.
        state: Option<Difference>,
    },
    /// The call sent no statement inside a transaction on the pool's
    /// connections on this thread: it uses another pool, or no `#[db_txn]`
    /// function.
    NoStatements {
        /// The pool's database.
        backend: Backend,
    },
    /// The check was run inside [`lend`](crate::lend) or a test
    /// transaction: the call would join it, and joined calls never retry.
    InsideSession,
    /// Another check runs on the same pool.
    Busy,
    /// A call ran more statements than a check tries.
    TooManyStatements {
        /// The most a check tries.
        limit: usize,
    },
    /// The set-up closure failed.
    Setup(BoxError),
    /// The snapshot closure failed.
    Snapshot(BoxError),
    /// No connection for the set-up or the snapshot.
    Pool(crate::Error),
}

impl fmt::Display for RetryCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryCheckError::NotRetrySafe(unsafe_) => fmt::Display::fmt(unsafe_, f),
            RetryCheckError::NotRepeatable { value, state } => {
                f.write_str(
                    "two clean runs of the call differ, before any connection was lost: make \
                     the set-up restore everything the call reads or the check compares \
                     (tables, sequences, in-memory state)",
                )?;
                if let Some(d) = value {
                    write!(
                        f,
                        "\n  returned:        {}\n  then:            {}",
                        d.clean, d.other
                    )?;
                }
                if let Some(d) = state {
                    write!(
                        f,
                        "\n  committed state: {}\n  then:            {}",
                        d.clean, d.other
                    )?;
                }
                Ok(())
            }
            RetryCheckError::NoStatements { backend } => write!(
                f,
                "the call sent no statement in a transaction on this {backend} pool: does it \
                 call a #[db_txn] function that uses this pool?"
            ),
            RetryCheckError::InsideSession => f.write_str(
                "a retry check needs the call to own its transaction, but a connection is \
                 lent on this thread (db_txn::lend or a test transaction): joined calls never \
                 retry; run the check outside",
            ),
            RetryCheckError::Busy => f.write_str("another retry check runs on this pool"),
            RetryCheckError::TooManyStatements { limit } => write!(
                f,
                "the call sent more than {limit} statements: a retry check tries each one"
            ),
            RetryCheckError::Setup(_) => f.write_str("the retry check's set-up failed"),
            RetryCheckError::Snapshot(_) => f.write_str("the retry check's snapshot failed"),
            RetryCheckError::Pool(_) => f.write_str("the retry check got no connection"),
        }
    }
}

impl std::error::Error for RetryCheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RetryCheckError::Setup(e) | RetryCheckError::Snapshot(e) => Some(&**e),
            RetryCheckError::Pool(e) => Some(e),
            _ => None,
        }
    }
}
