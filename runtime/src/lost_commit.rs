//! Resolving a COMMIT lost with its connection (issue 10), when a function
//! or its pool asks for it (`resolve_commit`): what the sync runner
//! (`runner/commit.rs`) and the async runner (`asynk/runner/commit.rs`)
//! share. They do the I/O, each on its own connections; every decision is
//! made here, once.
//!
//! Without it, a connection lost while COMMIT was in flight gives
//! [`Error::CommitUnknown`]. With it, the transaction carries what
//! identifies its outcome on the server ([`plan`], [`Watch`]; the SQL is
//! each backend's `resolve.rs`), and after the loss the runner asks the
//! server on fresh connections of the pool ([`Asking`]), within the pool's
//! `commit_resolution_timeout`; [`verdict`] turns what it found into what
//! the caller gets:
//!
//! * committed: the call returns the body's value;
//! * not committed: the body runs again, exactly as after a loss before
//!   COMMIT (it counts as a retry);
//! * still open on the server (its session has not noticed the lost link):
//!   that session is ended (once it is certainly that session) and the
//!   server asked again until the timeout;
//! * no answer before the timeout (server unreachable, transaction too old,
//!   a failover): `CommitUnknown`, as without the option.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use diesel::QueryResult;

use crate::backend::{Dialect, LostSession, Outcome, Scheme, Token, TxnSql};
use crate::classify::Disconnect;
use crate::pool::resolution::{Resolution, Table};
use crate::pool::tracked::Tracked;
use crate::stats::Counters;
use crate::{Error, Options};

/// Between two questions about a transaction still open on the server.
const POLL: Duration = Duration::from_millis(20);

/// What a transaction does so that its COMMIT can be resolved, decided
/// before BEGIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing: the call does not resolve (or cannot).
    Off,
    /// Read the transaction id before COMMIT (PostgreSQL).
    Xid,
    /// Write a marker in the BEGIN batch, once the table is there
    /// (MariaDB/MySQL).
    Marker,
}

/// How a call whose server tells by `scheme` resolves a lost COMMIT, on a
/// pool with `resolution`.
#[inline(always)]
pub(crate) fn plan(scheme: Scheme, resolution: &Resolution, options: &Options) -> Plan {
    if scheme == Scheme::None
        || options.read_only
        || !options.resolve_commit.unwrap_or(resolution.on)
    {
        return Plan::Off;
    }
    match scheme {
        Scheme::None => Plan::Off,
        Scheme::Xid => Plan::Xid,
        Scheme::Marker => Plan::Marker,
    }
}

/// What one transaction carries for resolving its COMMIT.
#[derive(Debug, Default)]
pub(crate) struct Watch {
    /// Read the transaction id before COMMIT (PostgreSQL).
    wants_xid: bool,
    /// What identifies the outcome, once known.
    token: Option<Token>,
    /// The transaction wrote nothing: a lost COMMIT loses nothing.
    wrote_nothing: bool,
}

/// A COMMIT lost with its connection, to be resolved.
pub(crate) struct Lost {
    pub(crate) token: Token,
    pub(crate) session: LostSession,
    kind: Disconnect,
    source: diesel::result::Error,
}

/// Why reading the transaction id before COMMIT, or COMMIT itself, failed.
pub(crate) enum Failure {
    /// Before COMMIT was sent: nothing was committed.
    Before(diesel::result::Error),
    /// COMMIT failed.
    Commit(diesel::result::Error),
}

impl Watch {
    /// [`Plan::Xid`]: the id is read before COMMIT.
    pub(crate) fn xid() -> Watch {
        Watch {
            wants_xid: true,
            ..Watch::default()
        }
    }

    /// [`Plan::Marker`], the table being there: `sql.begin` gets the
    /// marker's insert (one batch, no extra round trip).
    pub(crate) fn marker<D: Dialect>(sql: &mut TxnSql) -> Watch {
        let id = marker_id();
        sql.begin = D::begin_with_marker(&sql.begin, id).into();
        Watch {
            token: Some(Token::Marker { id }),
            ..Watch::default()
        }
    }

    /// The transaction id is to be read just before COMMIT.
    #[inline]
    pub(crate) fn wants_xid(&self) -> bool {
        self.wants_xid
    }

    /// What was read just before COMMIT (`None`: nothing written).
    pub(crate) fn read_xid(&mut self, token: Option<Token>) {
        self.wrote_nothing = token.is_none();
        self.token = token;
    }

    /// The transaction wrote nothing (PostgreSQL: no transaction id), so a
    /// lost COMMIT loses nothing and the body's result stands.
    #[inline]
    pub(crate) fn wrote_nothing(&self) -> bool {
        self.wrote_nothing
    }

    /// BEGIN failed for another reason than a lost connection: if its batch
    /// wrote a marker, the table may be gone, so check it again next time.
    pub(crate) fn begin_failed_in(&self, resolution: &Resolution) {
        if let Some(Token::Marker { .. }) = self.token {
            resolution.set_table(Table::Unknown);
        }
    }

    /// Whether the transaction carries what identifies its outcome.
    #[inline(always)]
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// After a successful COMMIT: the marker is no longer needed. Markers
    /// are deleted in batches, on the connection that fills one, after its
    /// COMMIT: the batch to delete now, if this one fills it.
    #[inline]
    pub(crate) fn forget_now(&self, resolution: &Resolution) -> Option<Vec<i64>> {
        match self.token {
            Some(Token::Marker { id }) => resolution.done(id),
            _ => None,
        }
    }

    /// The COMMIT was lost: what resolving it needs, if it can be resolved.
    pub(crate) fn lost<C>(
        self,
        tracked: &Tracked<C>,
        kind: Disconnect,
        source: diesel::result::Error,
    ) -> Result<Lost, diesel::result::Error> {
        match self.token {
            Some(token) => Ok(Lost {
                token,
                session: LostSession {
                    id: tracked.server.session_id,
                    opened: tracked.opened(),
                    flavor: tracked.server.flavor,
                },
                kind,
                source,
            }),
            None => Err(source),
        }
    }
}

/// The marker table: `Some(usable)` when known, `None` when the runner must
/// try to create it first (and tell [`table_created`] how that went).
#[inline]
pub(crate) fn table_known(resolution: &Resolution) -> Option<bool> {
    match resolution.table() {
        Table::Ready => Some(true),
        Table::Missing => Some(false),
        Table::Unknown => None,
    }
}

/// After trying to create the marker table (outside any transaction: DDL
/// commits on MySQL) on a connection that is `lost` now or not: whether it
/// can be used.
pub(crate) fn table_created(resolution: &Resolution, created: QueryResult<()>, lost: bool) -> bool {
    match created {
        Ok(()) => {
            resolution.set_table(Table::Ready);
            true
        }
        // The connection is gone: BEGIN finds out and the body runs again.
        Err(_) if lost => false,
        Err(e) => {
            resolution.set_table(Table::Missing);
            if resolution.first_warning() {
                tracing::warn!(
                    target: "db_txn",
                    error = %e,
                    "resolve_commit: the table db_txn_commit_markers cannot be created, so a \
                     lost COMMIT gives CommitUnknown; create it (see the crate docs: \
                     resolve_commit) or grant CREATE"
                );
            }
            false
        }
    }
}

/// A marker id: random, and different in each process (a forked child
/// included).
fn marker_id() -> i64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
    h.write_u64(NEXT.fetch_add(1, Relaxed));
    h.write_u32(std::process::id());
    h.finish() as i64
}

/// The questions about one lost COMMIT, asked on fresh connections until
/// the server tells or the timeout runs out: the runner checks a connection
/// out within [`left`](Self::left), asks, hands the answer to
/// [`answered`](Self::answered), does what it says, and waits
/// [`pause`](Self::pause) before the next round.
pub(crate) struct Asking {
    deadline: Instant,
    /// The lost session was ended: not tried again.
    ended: bool,
    /// What the timeout leaves the caller with.
    last: Outcome,
}

/// What to do after an answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// The server told: stop (the connection served well).
    Answered(Outcome),
    /// Stop with this (the server refused the question).
    Refused(Outcome),
    /// Still open on the server: end its session
    /// ([`tried_to_end`](Asking::tried_to_end)), then ask again.
    EndSession,
    /// Ask again at the next round.
    Again,
}

impl Asking {
    pub(crate) fn new(timeout: Duration) -> Self {
        Asking {
            deadline: Instant::now() + timeout,
            ended: false,
            last: Outcome::Unknown("no connection to the server within the resolution timeout"),
        }
    }

    /// The time left, `None` once the timeout has run out.
    pub(crate) fn left(&self) -> Option<Duration> {
        Some(self.deadline.saturating_duration_since(Instant::now())).filter(|l| !l.is_zero())
    }

    /// Before the next round.
    pub(crate) fn pause(&self) -> Duration {
        POLL.min(self.deadline.saturating_duration_since(Instant::now()))
    }

    /// The server's `answer` to the question, on a connection that is
    /// `lost` now or not.
    pub(crate) fn answered(&mut self, answer: QueryResult<Outcome>, lost: bool) -> Next {
        match answer {
            Ok(Outcome::InProgress) => {
                self.last = Outcome::InProgress;
                if self.ended {
                    Next::Again
                } else {
                    Next::EndSession
                }
            }
            Ok(found) => Next::Answered(found),
            Err(_) if lost => {
                self.last = Outcome::Unknown("the server could not be reached");
                Next::Again
            }
            Err(e) => {
                tracing::warn!(
                    target: "db_txn",
                    error = %e,
                    "asking the server about a lost COMMIT failed"
                );
                Next::Refused(Outcome::Unknown("the server refused the question"))
            }
        }
    }

    /// The question got no answer before the timeout (the async runner
    /// bounds each question by it).
    #[cfg_attr(not(feature = "async"), allow(dead_code))]
    pub(crate) fn unanswered(&mut self) {
        self.last = Outcome::Unknown("the server did not answer within the resolution timeout");
    }

    /// What ending the lost session gave.
    pub(crate) fn tried_to_end(&mut self, ended: QueryResult<bool>, lost: &Lost) {
        match ended {
            Ok(true) => {
                self.ended = true;
                tracing::info!(
                    target: "db_txn",
                    session = lost.session.id,
                    "the lost COMMIT's session was still open on the server: ended it"
                );
            }
            // Not (yet) known to be that session: asked again at the next round.
            Ok(false) => {}
            Err(e) => tracing::debug!(
                target: "db_txn",
                error = %e,
                "could not end the lost COMMIT's session"
            ),
        }
    }

    /// What the timeout leaves: `InProgress` or `Unknown`.
    pub(crate) fn outcome(self) -> Outcome {
        self.last
    }
}

/// What the caller of a call whose COMMIT was lost gets.
pub(crate) enum Verdict {
    /// The body's value.
    Committed,
    /// Nothing committed: the body runs again, as after this loss before
    /// COMMIT.
    Aborted {
        kind: Disconnect,
        source: diesel::result::Error,
    },
    /// [`Error::CommitUnknown`].
    Unknown(Error),
}

/// What `found`, after asking since `started`, means for the caller; counts
/// it and logs it (one INFO event, or an ERROR when it stays unknown).
pub(crate) fn verdict(
    counters: &Counters,
    resolution: &Resolution,
    options: &Options,
    lost: Lost,
    found: Outcome,
    started: Instant,
) -> Verdict {
    let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match found {
        Outcome::Committed => {
            Counters::bump(&counters.lost_commits_committed);
            if let Token::Marker { id } = lost.token {
                resolution.forget_later(id);
            }
            tracing::info!(
                target: "db_txn",
                outcome = "committed",
                waited_ms,
                "connection lost during COMMIT; the server says the transaction committed: \
                 returning its result"
            );
            Verdict::Committed
        }
        Outcome::Aborted => {
            Counters::bump(&counters.lost_commits_aborted);
            tracing::info!(
                target: "db_txn",
                outcome = "aborted",
                waited_ms,
                "connection lost during COMMIT; the server says the transaction did not commit: \
                 handled like a loss before COMMIT"
            );
            Verdict::Aborted {
                kind: lost.kind,
                source: lost.source,
            }
        }
        Outcome::InProgress | Outcome::Unknown(_) => {
            let reason = match found {
                Outcome::Unknown(why) => why,
                _ => "the transaction was still open on the server",
            };
            Counters::bump(&counters.commit_unknowns);
            tracing::error!(
                target: "db_txn",
                outcome = "unknown",
                reason,
                waited_ms,
                error = %lost.source,
                "connection lost during COMMIT and its outcome could not be found: not retried"
            );
            Verdict::Unknown(Error::CommitUnknown {
                function: options.name,
                source: lost.source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> diesel::result::Error {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::Unknown,
            Box::new("permission denied".to_string()),
        )
    }

    #[test]
    fn marker_ids_differ() {
        let ids: std::collections::HashSet<i64> = (0..10_000).map(|_| marker_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn the_plan_follows_the_function_then_the_pool() {
        let on = Resolution::new(true, Duration::from_secs(1));
        let off = Resolution::new(false, Duration::from_secs(1));
        let f = Options::new("f");
        assert_eq!(plan(Scheme::Xid, &on, &f), Plan::Xid);
        assert_eq!(plan(Scheme::Marker, &on, &f), Plan::Marker);
        assert_eq!(plan(Scheme::Xid, &off, &f), Plan::Off);
        assert_eq!(plan(Scheme::Xid, &off, &f.resolve_commit(true)), Plan::Xid);
        assert_eq!(
            plan(Scheme::Marker, &on, &f.resolve_commit(false)),
            Plan::Off
        );
        assert_eq!(plan(Scheme::Xid, &on, &f.read_only()), Plan::Off);
        assert_eq!(plan(Scheme::None, &on, &f), Plan::Off);
    }

    #[test]
    fn a_transaction_that_wrote_nothing_has_nothing_to_lose() {
        let mut w = Watch::xid();
        assert!(w.wants_xid() && !w.wrote_nothing());
        w.read_xid(None);
        assert!(w.wrote_nothing());
    }

    #[test]
    fn a_marker_goes_into_the_begin_batch() {
        let mut sql = TxnSql::plain("START TRANSACTION");
        let w = Watch::marker::<crate::backend::mysql::Mysql>(&mut sql);
        let Some(Token::Marker { id }) = w.token else {
            panic!("{w:?}")
        };
        assert_eq!(
            sql.begin,
            format!("START TRANSACTION; INSERT INTO db_txn_commit_markers (id) VALUES ({id})")
        );
        // A full batch of committed markers is handed back for deletion.
        let r = Resolution::new(true, Duration::from_secs(1));
        let batches = (0..crate::pool::resolution::FORGET_BATCH)
            .filter_map(|_| w.forget_now(&r))
            .count();
        assert_eq!(batches, 1);
        assert_eq!(Watch::xid().forget_now(&r), None);
    }

    #[test]
    fn the_marker_table_is_created_once_and_a_refusal_remembered() {
        let r = Resolution::new(true, Duration::from_secs(1));
        assert_eq!(table_known(&r), None);
        // Lost while creating: nothing learnt.
        assert!(!table_created(&r, Err(refused()), true));
        assert_eq!(table_known(&r), None);
        assert!(!table_created(&r, Err(refused()), false));
        assert_eq!(table_known(&r), Some(false));
        assert!(table_created(&r, Ok(()), false));
        assert_eq!(table_known(&r), Some(true));
    }

    #[test]
    fn a_session_still_open_is_ended_once_then_asked_again() {
        let lost = Lost {
            token: Token::Marker { id: 1 },
            session: LostSession {
                id: Some(7),
                opened: Instant::now(),
                flavor: crate::backend::Flavor::MariaDb,
            },
            kind: Disconnect::Closed,
            source: refused(),
        };
        let mut a = Asking::new(Duration::from_secs(5));
        assert!(a.left().is_some());
        assert_eq!(a.answered(Ok(Outcome::InProgress), false), Next::EndSession);
        a.tried_to_end(Ok(false), &lost);
        assert_eq!(a.answered(Ok(Outcome::InProgress), false), Next::EndSession);
        a.tried_to_end(Ok(true), &lost);
        assert_eq!(a.answered(Ok(Outcome::InProgress), false), Next::Again);
        assert_eq!(
            a.answered(Ok(Outcome::Aborted), false),
            Next::Answered(Outcome::Aborted)
        );
        assert_eq!(a.outcome(), Outcome::InProgress);
    }

    #[test]
    fn an_unreachable_server_is_asked_again_a_refusal_ends_it() {
        let mut a = Asking::new(Duration::from_secs(5));
        assert_eq!(a.answered(Err(refused()), true), Next::Again);
        assert!(matches!(
            a.answered(Err(refused()), false),
            Next::Refused(Outcome::Unknown(_))
        ));
        assert_eq!(
            a.outcome(),
            Outcome::Unknown("the server could not be reached")
        );
        let done = Asking::new(Duration::ZERO);
        assert_eq!(done.left(), None);
        assert_eq!(done.pause(), Duration::ZERO);
    }

    #[test]
    fn each_verdict_is_counted_once() {
        let counters = Counters::default();
        let r = Resolution::new(true, Duration::from_secs(1));
        let options = Options::new("f");
        let lost = || Lost {
            token: Token::Marker { id: 3 },
            session: LostSession {
                id: None,
                opened: Instant::now(),
                flavor: crate::backend::Flavor::Unknown,
            },
            kind: Disconnect::Closed,
            source: refused(),
        };
        let now = Instant::now();
        let v = verdict(&counters, &r, &options, lost(), Outcome::Committed, now);
        assert!(matches!(v, Verdict::Committed));
        let v = verdict(&counters, &r, &options, lost(), Outcome::Aborted, now);
        assert!(matches!(
            v,
            Verdict::Aborted {
                kind: Disconnect::Closed,
                ..
            }
        ));
        let v = verdict(&counters, &r, &options, lost(), Outcome::InProgress, now);
        assert!(matches!(v, Verdict::Unknown(Error::CommitUnknown { .. })));
        let s = counters.snapshot(0, 0);
        assert_eq!(
            (
                s.lost_commits_committed,
                s.lost_commits_aborted,
                s.commit_unknowns
            ),
            (1, 1, 1)
        );
    }
}
