//! Resolving a COMMIT lost with its connection (issue 10), when a function
//! or its pool asks for it (`resolve_commit`).
//!
//! Without it, a connection lost while COMMIT was in flight gives
//! [`Error::CommitUnknown`]. With it, the transaction carries what
//! identifies its outcome on the server ([`prepare`], [`commit`]; the SQL is
//! each backend's `resolve.rs`), and after the loss [`settle`] asks the
//! server on fresh connections of the pool, within the pool's
//! `commit_resolution_timeout`:
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
use std::thread;
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager as Tm, TransactionManager};

use super::Attempt;
use crate::backend::{LostSession, Outcome, Scheme, Token, TxnConnection, TxnSql};
use crate::classify::Disconnect;
use crate::pool::flags::Flags;
use crate::pool::resolution::Table;
use crate::pool::tracked::Tracked;
use crate::stats::Counters;
use crate::{Error, Options, Pool};

/// Between two questions about a transaction still open on the server.
const POLL: Duration = Duration::from_millis(20);

/// What one transaction carries for resolving its COMMIT.
#[derive(Debug, Default)]
pub(super) struct Watch {
    /// Read the transaction id before COMMIT (PostgreSQL).
    wants_xid: bool,
    /// What identifies the outcome, once known.
    token: Option<Token>,
    /// The transaction wrote nothing: a lost COMMIT loses nothing.
    wrote_nothing: bool,
}

/// A COMMIT lost with its connection, to be resolved.
pub(super) struct Lost {
    token: Token,
    session: LostSession,
    kind: Disconnect,
    source: diesel::result::Error,
}

/// Why reading the transaction id before COMMIT, or COMMIT itself, failed.
pub(super) enum Failure {
    /// Before COMMIT was sent: nothing was committed.
    Before(diesel::result::Error),
    /// COMMIT failed.
    Commit(diesel::result::Error),
}

impl Watch {
    /// The transaction wrote nothing (PostgreSQL: no transaction id), so a
    /// lost COMMIT loses nothing and the body's result stands.
    pub(super) fn wrote_nothing(&self) -> bool {
        self.wrote_nothing
    }

    /// BEGIN failed for another reason than a lost connection: if its batch
    /// wrote a marker, the table may be gone, so check it again next time.
    pub(super) fn begin_failed<C: TxnConnection>(&self, pool: &Pool<C>) {
        if let Some(Token::Marker { .. }) = self.token {
            pool.resolution().set_table(Table::Unknown);
        }
    }

    /// After a successful COMMIT: the marker is no longer needed. Markers
    /// are deleted in batches, on the connection that fills one, after its
    /// COMMIT (a failure only leaves them to the stale clean-up).
    #[inline(always)]
    pub(super) fn committed<C: TxnConnection>(&self, pool: &Pool<C>, conn: &mut C) {
        if let Some(Token::Marker { id }) = self.token {
            forget_marker(pool, conn, id);
        }
    }

    /// The COMMIT was lost: what resolving it needs, if it can be resolved.
    pub(super) fn lost<C>(
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

#[inline(never)]
fn forget_marker<C: TxnConnection>(pool: &Pool<C>, conn: &mut C, id: i64) {
    if let Some(batch) = pool.resolution().done(id) {
        if let Err(e) = conn.forget_markers(&batch) {
            tracing::debug!(target: "db_txn", error = %e, "deleting commit markers failed");
        }
    }
}

/// Whether a call's lost COMMIT is resolved.
#[inline(always)]
fn enabled<C: TxnConnection>(pool: &Pool<C>, options: &Options) -> bool {
    C::RESOLVE != Scheme::None
        && !options.read_only
        && options.resolve_commit.unwrap_or(pool.resolution().on)
}

/// Before BEGIN: get ready to resolve this transaction's COMMIT. With a
/// marker, `sql.begin` gets its insert (one batch, no extra round trip).
#[inline(always)]
pub(super) fn prepare<C: TxnConnection>(
    pool: &Pool<C>,
    tracked: &mut Tracked<C>,
    options: &Options,
    sql: &mut TxnSql,
) -> Watch {
    if !enabled(pool, options) {
        return Watch::default();
    }
    prepare_token(pool, tracked, sql)
}

#[inline(never)]
fn prepare_token<C: TxnConnection>(
    pool: &Pool<C>,
    tracked: &mut Tracked<C>,
    sql: &mut TxnSql,
) -> Watch {
    match C::RESOLVE {
        Scheme::None => Watch::default(),
        Scheme::Xid => Watch {
            wants_xid: true,
            ..Watch::default()
        },
        Scheme::Marker => {
            if !markers_ready(pool, &mut tracked.conn, &tracked.flags) {
                return Watch::default();
            }
            let id = marker_id();
            sql.begin = C::begin_with_marker(&sql.begin, id).into();
            Watch {
                token: Some(Token::Marker { id }),
                ..Watch::default()
            }
        }
    }
}

/// The marker table is there, created now if need be (outside any
/// transaction: DDL commits on MySQL).
fn markers_ready<C: TxnConnection>(pool: &Pool<C>, conn: &mut C, flags: &Flags) -> bool {
    let resolution = pool.resolution();
    match resolution.table() {
        Table::Ready => true,
        Table::Missing => false,
        Table::Unknown => match conn.create_markers() {
            Ok(()) => {
                resolution.set_table(Table::Ready);
                true
            }
            // The connection is gone: BEGIN finds out and the body runs again.
            Err(_) if flags.disconnect().is_some() => false,
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
        },
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

/// COMMIT, after reading the transaction id if the scheme needs it.
#[inline(always)]
pub(super) fn commit<C: TxnConnection>(conn: &mut C, watch: &mut Watch) -> Result<(), Failure> {
    if watch.wants_xid {
        let token = conn.before_commit().map_err(Failure::Before)?;
        watch.wrote_nothing = token.is_none();
        watch.token = token;
    }
    Tm::commit_transaction(conn).map_err(Failure::Commit)
}

/// Reading the transaction id failed, before COMMIT: nothing committed. A
/// lost connection runs the body again; any other error (the transaction
/// is aborted on the server then) rolls back and is the call's error.
pub(super) fn failed_before<C: TxnConnection, T, E: From<Error>>(
    options: &Options,
    flags: &Flags,
    conn: &mut C,
    e: diesel::result::Error,
) -> Attempt<T, E> {
    if let Some(kind) = flags.disconnect() {
        return Attempt::Lost { kind, source: e };
    }
    if Tm::rollback_transaction(conn).is_err() {
        flags.set_discard();
    }
    Attempt::Done(Err(super::step_error(
        options,
        crate::error::Step::Commit,
        e,
    )
    .into()))
}

/// A COMMIT lost with its connection, with the body's value.
pub(super) struct CommitLost<T> {
    pub value: T,
    pub lost: Lost,
}

/// Turns a lost COMMIT into what the caller gets: the body's value, a
/// retry, or `CommitUnknown`.
pub(super) fn settle<C, T, E>(
    pool: &Pool<C>,
    options: &Options,
    CommitLost { value, lost }: CommitLost<T>,
) -> Attempt<T, E>
where
    C: TxnConnection,
    E: From<Error>,
{
    let counters = pool.counters();
    let started = Instant::now();
    let found = resolve(pool, options, &lost);
    let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match found {
        Outcome::Committed => {
            Counters::bump(&counters.lost_commits_committed);
            if let Token::Marker { id } = lost.token {
                pool.resolution().forget_later(id);
            }
            tracing::info!(
                target: "db_txn",
                outcome = "committed",
                waited_ms,
                "connection lost during COMMIT; the server says the transaction committed: \
                 returning its result"
            );
            Attempt::Done(Ok(value))
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
            Attempt::Lost {
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
            Attempt::Done(Err(Error::CommitUnknown {
                function: options.name,
                source: lost.source,
            }
            .into()))
        }
    }
}

/// Asks fresh connections of the pool until the server tells, or the
/// timeout runs out (`InProgress` or `Unknown` then).
fn resolve<C: TxnConnection>(pool: &Pool<C>, options: &Options, lost: &Lost) -> Outcome {
    let deadline = Instant::now() + pool.resolution().timeout;
    let mut ended = false;
    let mut last = Outcome::Unknown("no connection to the server within the resolution timeout");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return last;
        }
        let Ok(mut conn) = pool.checkout_within(Some(options.name), left) else {
            thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
            continue;
        };
        let tracked = conn.tracked();
        match tracked.conn.commit_outcome(&lost.token) {
            Ok(Outcome::InProgress) => {
                last = Outcome::InProgress;
                if !ended {
                    match tracked.conn.end_lost_session(&lost.token, &lost.session) {
                        Ok(true) => {
                            ended = true;
                            tracing::info!(
                            target: "db_txn",
                            session = lost.session.id,
                                "the lost COMMIT's session was still open on the server: ended it"
                            );
                        }
                        // Not (yet) known to be that session: asked again at the next poll.
                        Ok(false) => {}
                        Err(e) => tracing::debug!(
                            target: "db_txn",
                            error = %e,
                            "could not end the lost COMMIT's session"
                        ),
                    }
                }
            }
            Ok(found) => {
                tracked.ok = true;
                return found;
            }
            Err(_) if tracked.flags.disconnect().is_some() => {
                last = Outcome::Unknown("the server could not be reached");
            }
            Err(e) => {
                tracing::warn!(
                    target: "db_txn",
                    error = %e,
                    "asking the server about a lost COMMIT failed"
                );
                return Outcome::Unknown("the server refused the question");
            }
        }
        drop(conn);
        thread::sleep(POLL.min(deadline.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_ids_differ() {
        let ids: std::collections::HashSet<i64> = (0..10_000).map(|_| marker_id()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
