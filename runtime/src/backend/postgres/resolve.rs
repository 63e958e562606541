//! PostgreSQL: a lost COMMIT's outcome from the transaction id (see
//! `lost_commit.rs` for the steps), on `PgConnection` and
//! `AsyncPgConnection` alike: the SQL and what its answers mean are here
//! once, each driver only runs it.
//!
//! Just before COMMIT, one query inside the transaction reads its id
//! (`txid_current_if_assigned()`: none if it wrote nothing, and then there
//! is nothing to commit), its backend's pid, the server's start time and the
//! WAL timeline. After the loss, `txid_status` on a fresh connection says
//! `committed`, `aborted` or `in progress` (the old backend has not noticed
//! the lost link: it is terminated, matched by pid *and* transaction id, and
//! asked again). The `txid_*` functions exist from PostgreSQL 10 on
//! (13 renamed them `pg_*xact*`, keeping these).
//!
//! Two cases where the id may belong to another transaction are caught:
//! a failover (another timeline: the answer is "unknown"), and a crash that
//! lost the transaction's WAL before it committed, after which the server
//! may hand the same id out again. Then the id is at or past the next id
//! recorded by the latest checkpoint (the end-of-recovery one): the
//! transaction was lost, so it did not commit.

// Without a driver only the SQL and its tests are compiled.
#![cfg_attr(
    not(any(feature = "postgres", feature = "async-postgres")),
    allow(dead_code)
)]

use super::super::{Outcome, XidToken};

/// Read inside the transaction, just before COMMIT. Kept cheap: it is one
/// round trip on every transaction (the start time travels in binary, the
/// WAL file name is cut to its timeline here). No WAL position on a standby,
/// where a transaction that wrote nothing may run.
pub(crate) const BEFORE_COMMIT_SQL: &str = "SELECT txid_current_if_assigned() AS txid, \
     pg_backend_pid() AS pid, pg_postmaster_start_time() AS started, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END \
     AS wal";

/// The timeline of a WAL file name: its first 8 hexadecimal digits.
pub(crate) fn timeline(wal_file: &str) -> Option<String> {
    wal_file.get(..8).map(str::to_owned)
}

/// What a fresh connection sees of transaction `txid`. `txid_status` raises
/// an error for an id not handed out yet: compared with `txid_current()`
/// (which hands one out to this statement) first. The checkpoint is read
/// only after a restart.
pub(crate) fn status_sql(token: &XidToken) -> String {
    let XidToken {
        txid, started: s, ..
    } = token;
    format!(
        "SELECT pg_is_in_recovery() AS in_recovery, \
         CASE WHEN pg_is_in_recovery() THEN NULL \
         WHEN {txid} >= txid_current() THEN 'future' \
         ELSE txid_status({txid}) END AS status, \
         pg_postmaster_start_time() AS started, \
         CASE WHEN pg_is_in_recovery() THEN NULL \
         ELSE pg_walfile_name(pg_current_wal_lsn()) END AS wal, \
         CASE WHEN pg_postmaster_start_time() = timestamptz '2000-01-01 00:00:00+00' \
         + interval '{s} microseconds' THEN NULL \
         ELSE (SELECT (split_part(next_xid, ':', 1)::int8 << 32) | split_part(next_xid, ':', 2)::int8 \
         FROM pg_control_checkpoint()) END AS next_xid"
    )
}

/// Terminates the backend still running the transaction, if it is: matched
/// by pid and transaction id, so through a pooler, or after the pid was
/// reused, nothing else is touched.
pub(crate) fn end_session_sql(token: &XidToken) -> String {
    format!(
        "SELECT COALESCE(bool_or(pg_terminate_backend(pid)), false) AS ended \
         FROM pg_stat_activity WHERE pid = {} AND backend_xid::text = '{}'",
        token.pid,
        token.txid & 0xffff_ffff
    )
}

/// What [`status_sql`] returned.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seen {
    pub in_recovery: bool,
    pub status: Option<String>,
    pub started: i64,
    pub timeline: Option<String>,
    /// The next id at the latest checkpoint, after a restart only.
    pub next_xid: Option<i64>,
}

/// What became of the transaction of `token`, from what a fresh connection saw.
pub(crate) fn decide(token: &XidToken, seen: &Seen) -> Outcome {
    if seen.in_recovery {
        return Outcome::Unknown("a standby answered, not the primary that ran the transaction");
    }
    if seen.timeline.as_deref() != Some(token.timeline.as_str()) {
        return Outcome::Unknown(
            "the server is on another WAL timeline (a failover): the transaction id may name \
             another transaction there",
        );
    }
    if seen.started != token.started {
        // Restarted since: if the id was not durable when the server came
        // back, the transaction's WAL was lost, and the id may be reused.
        match seen.next_xid {
            Some(next) if token.txid >= next => return Outcome::Aborted,
            Some(_) => {}
            None => {
                return Outcome::Unknown("the server restarted and its checkpoint is not readable")
            }
        }
    }
    match seen.status.as_deref() {
        Some("committed") => Outcome::Committed,
        Some("aborted") => Outcome::Aborted,
        Some("in progress") => Outcome::InProgress,
        // Not handed out on this timeline since a restart: lost with the crash.
        Some("future") if seen.started != token.started => Outcome::Aborted,
        Some("future") => Outcome::Unknown("the transaction id is in the server's future"),
        None => Outcome::Unknown("the transaction is too old for the server to remember"),
        Some(_) => Outcome::Unknown("txid_status gave an unexpected answer"),
    }
}

// The rows, and what they mean, for both drivers.
#[cfg(any(feature = "postgres", feature = "async-postgres"))]
mod rows {
    use diesel::pg::data_types::PgTimestamp;
    use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamptz};
    use diesel::QueryableByName;

    use super::super::super::{Token, XidToken};
    use super::{timeline, Seen};

    /// What [`BEFORE_COMMIT_SQL`](super::BEFORE_COMMIT_SQL) returns.
    #[derive(QueryableByName)]
    pub(super) struct Before {
        #[diesel(sql_type = Nullable<BigInt>)]
        txid: Option<i64>,
        #[diesel(sql_type = Integer)]
        pid: i32,
        #[diesel(sql_type = Timestamptz)]
        started: PgTimestamp,
        #[diesel(sql_type = Nullable<Text>)]
        wal: Option<String>,
    }

    impl Before {
        /// The token; `None` when the transaction wrote nothing.
        pub(super) fn token(self) -> Option<Token> {
            let timeline = self.wal.as_deref().and_then(timeline);
            self.txid.zip(timeline).map(|(txid, timeline)| {
                Token::Xid(XidToken {
                    txid,
                    pid: self.pid,
                    started: self.started.0,
                    timeline,
                })
            })
        }
    }

    /// What [`status_sql`](super::status_sql) returns.
    #[derive(QueryableByName)]
    pub(super) struct Status {
        #[diesel(sql_type = Bool)]
        in_recovery: bool,
        #[diesel(sql_type = Nullable<Text>)]
        status: Option<String>,
        #[diesel(sql_type = Timestamptz)]
        started: PgTimestamp,
        #[diesel(sql_type = Nullable<Text>)]
        wal: Option<String>,
        #[diesel(sql_type = Nullable<BigInt>)]
        next_xid: Option<i64>,
    }

    impl Status {
        pub(super) fn seen(self) -> Seen {
            Seen {
                in_recovery: self.in_recovery,
                status: self.status,
                started: self.started.0,
                timeline: self.wal.as_deref().and_then(timeline),
                next_xid: self.next_xid,
            }
        }
    }

    /// What [`end_session_sql`](super::end_session_sql) returns.
    #[derive(QueryableByName)]
    pub(super) struct Ended {
        #[diesel(sql_type = Bool)]
        pub ended: bool,
    }
}

#[cfg(feature = "postgres")]
pub(super) use driver::*;

/// On `PgConnection`.
#[cfg(feature = "postgres")]
mod driver {
    use diesel::{PgConnection, QueryResult, RunQueryDsl};

    use super::super::super::Token;
    use super::rows::{Before, Ended, Status};
    use super::*;

    pub(crate) fn before_commit(conn: &mut PgConnection) -> QueryResult<Option<Token>> {
        let b: Before = diesel::sql_query(BEFORE_COMMIT_SQL).get_result(conn)?;
        Ok(b.token())
    }

    pub(crate) fn outcome(conn: &mut PgConnection, token: &XidToken) -> QueryResult<Outcome> {
        let s: Status = diesel::sql_query(status_sql(token)).get_result(conn)?;
        Ok(decide(token, &s.seen()))
    }

    pub(crate) fn end_session(conn: &mut PgConnection, token: &XidToken) -> QueryResult<bool> {
        let e: Ended = diesel::sql_query(end_session_sql(token)).get_result(conn)?;
        Ok(e.ended)
    }
}

#[cfg(feature = "async-postgres")]
pub(super) use async_driver::*;

/// The same on `AsyncPgConnection`.
#[cfg(feature = "async-postgres")]
mod async_driver {
    use diesel::pg::Pg;
    use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
    use diesel::sql_types::Untyped;
    use diesel::QueryResult;
    use diesel_async::{AsyncPgConnection, RunQueryDsl};

    use super::super::super::Token;
    use super::rows::{Before, Ended, Status};
    use super::*;

    /// [`BEFORE_COMMIT_SQL`] as a query the connection keeps prepared: it
    /// runs on every transaction, and diesel-async prepares a `sql_query`
    /// anew each time (one more round trip; libpq's unnamed statement does
    /// without).
    #[derive(QueryId)]
    struct BeforeCommit;

    impl QueryFragment<Pg> for BeforeCommit {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            out.push_sql(BEFORE_COMMIT_SQL);
            Ok(())
        }
    }

    impl Query for BeforeCommit {
        type SqlType = Untyped;
    }

    pub(crate) async fn before_commit_async(
        conn: &mut AsyncPgConnection,
    ) -> QueryResult<Option<Token>> {
        let b: Before = BeforeCommit.get_result(conn).await?;
        Ok(b.token())
    }

    pub(crate) async fn outcome_async(
        conn: &mut AsyncPgConnection,
        token: &XidToken,
    ) -> QueryResult<Outcome> {
        let s: Status = diesel::sql_query(status_sql(token))
            .get_result(conn)
            .await?;
        Ok(decide(token, &s.seen()))
    }

    pub(crate) async fn end_session_async(
        conn: &mut AsyncPgConnection,
        token: &XidToken,
    ) -> QueryResult<bool> {
        let e: Ended = diesel::sql_query(end_session_sql(token))
            .get_result(conn)
            .await?;
        Ok(e.ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> XidToken {
        XidToken {
            txid: (1 << 32) | 900,
            pid: 4242,
            started: 817_000_000_500_000,
            timeline: "00000001".into(),
        }
    }

    fn seen(status: Option<&str>) -> Seen {
        Seen {
            in_recovery: false,
            status: status.map(str::to_owned),
            started: 817_000_000_500_000,
            timeline: Some("00000001".into()),
            next_xid: None,
        }
    }

    #[test]
    fn the_status_of_a_running_server_is_the_answer() {
        let t = token();
        assert_eq!(decide(&t, &seen(Some("committed"))), Outcome::Committed);
        assert_eq!(decide(&t, &seen(Some("aborted"))), Outcome::Aborted);
        assert_eq!(decide(&t, &seen(Some("in progress"))), Outcome::InProgress);
        assert!(matches!(decide(&t, &seen(None)), Outcome::Unknown(_)));
        assert!(matches!(
            decide(&t, &seen(Some("future"))),
            Outcome::Unknown(_)
        ));
    }

    #[test]
    fn a_failover_or_a_standby_cannot_tell() {
        let t = token();
        let mut s = seen(Some("committed"));
        s.timeline = Some("00000002".into());
        assert!(matches!(decide(&t, &s), Outcome::Unknown(_)));
        let mut s = seen(Some("committed"));
        s.in_recovery = true;
        assert!(matches!(decide(&t, &s), Outcome::Unknown(_)));
    }

    #[test]
    fn after_a_restart_an_id_that_was_not_durable_is_lost() {
        let t = token();
        let restarted = |status, next| Seen {
            started: 817_000_100_250_000,
            next_xid: next,
            ..seen(status)
        };
        // The end-of-recovery checkpoint knew the id: the status is the transaction's.
        let known = Some(t.txid + 1);
        assert_eq!(
            decide(&t, &restarted(Some("committed"), known)),
            Outcome::Committed
        );
        assert_eq!(
            decide(&t, &restarted(Some("aborted"), known)),
            Outcome::Aborted
        );
        // It did not: whatever the status says now is another transaction's.
        let lost = Some(t.txid);
        assert_eq!(
            decide(&t, &restarted(Some("committed"), lost)),
            Outcome::Aborted
        );
        assert_eq!(
            decide(&t, &restarted(Some("future"), known)),
            Outcome::Aborted
        );
        assert!(matches!(
            decide(&t, &restarted(Some("committed"), None)),
            Outcome::Unknown(_)
        ));
    }

    #[test]
    fn sql() {
        let t = token();
        let s = status_sql(&t);
        assert!(
            s.contains("WHEN 4294968196 >= txid_current() THEN 'future'"),
            "{s}"
        );
        assert!(
            s.contains("+ interval '817000000500000 microseconds' THEN NULL"),
            "{s}"
        );
        assert_eq!(
            timeline("000000020000000000000003").as_deref(),
            Some("00000002")
        );
        assert_eq!(timeline("0002"), None);
        let e = end_session_sql(&t);
        assert!(
            e.ends_with("WHERE pid = 4242 AND backend_xid::text = '900'"),
            "{e}"
        );
    }
}
