//! MariaDB/MySQL: a lost COMMIT's outcome from a marker row (see
//! `lost_commit.rs` for the steps), on `MysqlConnection` and
//! `AsyncMysqlConnection` alike: the SQL and what its answers mean are
//! here once, each driver only runs it.
//!
//! The transaction's BEGIN batch also inserts a row with a random id into
//! [`TABLE`], so the row is in the table if and only if the transaction
//! committed. Until the transaction ends, InnoDB holds the row's lock: a
//! `FOR UPDATE NOWAIT` read of it fails while the old session may still
//! commit, returns the row once it committed, and nothing once it rolled
//! back. Markers of transactions that committed normally are deleted in
//! batches; the ones a crashed client left behind, after a day.

// Without a driver only the SQL and its tests are compiled.
#![cfg_attr(not(any(feature = "mysql", feature = "async-mysql")), allow(dead_code))]

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::QueryResult;

use super::super::{Flavor, Outcome};

/// The library's table. Created on first use by a pool that resolves lost
/// COMMITs (`CREATE TABLE IF NOT EXISTS`, outside any transaction), or by
/// hand with [`CREATE_SQL`] where the application may not run DDL.
pub const TABLE: &str = "db_txn_commit_markers";

/// The migration: what the pool runs on first use.
pub const CREATE_SQL: &str = "CREATE TABLE IF NOT EXISTS db_txn_commit_markers (\
     id BIGINT NOT NULL PRIMARY KEY, \
     created DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP\
     ) ENGINE=InnoDB";

/// Markers older than this are deleted whatever became of them: nobody asks
/// about a COMMIT lost that long ago (a resolution lasts seconds).
const STALE: &str = "1 DAY";

/// How many stale markers one clean-up deletes.
const STALE_BATCH: u32 = 1000;

/// `begin` and the insert of marker `id`, sent as one batch (no extra round
/// trip).
pub(crate) fn begin_with_marker(begin: &str, id: i64) -> String {
    format!("{begin}; INSERT INTO {TABLE} (id) VALUES ({id})")
}

/// Deletes the markers `ids` (their transactions' outcomes are known).
pub(crate) fn forget_sql(ids: &[i64]) -> String {
    let list: Vec<String> = ids.iter().map(i64::to_string).collect();
    format!("DELETE FROM {TABLE} WHERE id IN ({})", list.join(", "))
}

/// Whether the table is there (and readable).
fn probe_sql() -> String {
    format!("SELECT id FROM {TABLE} LIMIT 0")
}

/// Markers left behind long ago, by a consistent (non-locking) read: the
/// delete that follows touches only these rows, never an open
/// transaction's marker.
fn stale_sql() -> String {
    format!("SELECT id FROM {TABLE} WHERE created < NOW() - INTERVAL {STALE} LIMIT {STALE_BATCH}")
}

/// The marker, read with a lock that is not waited for.
fn check_sql(id: i64) -> String {
    format!("SELECT id FROM {TABLE} WHERE id = {id} FOR UPDATE NOWAIT")
}

/// The server's uptime in seconds, and whether session `id` is one of this
/// user's.
fn session_sql(flavor: Flavor, id: u64) -> String {
    // MySQL 8 moved the status variables to performance_schema.
    let status = match flavor {
        Flavor::Mysql => "performance_schema.global_status",
        _ => "information_schema.GLOBAL_STATUS",
    };
    format!(
        "SELECT CAST(VARIABLE_VALUE AS SIGNED) AS uptime, \
         (SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {id} \
         AND USER = SUBSTRING_INDEX(USER(), '@', 1)) AS mine \
         FROM {status} WHERE VARIABLE_NAME = 'UPTIME'"
    )
}

/// The lock is held by another transaction: MariaDB answers `NOWAIT` with
/// 1205, MySQL 8 with 3572.
fn lock_busy(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info)
        | DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, info) => {
            let m = info.message();
            m.contains("Lock wait timeout exceeded") || m.contains("NOWAIT is set")
        }
        _ => false,
    }
}

/// Ends session `id`.
fn kill_sql(id: u64) -> String {
    format!("KILL CONNECTION {id}")
}

/// What the marker read (`check_sql`) says: found, not found, or its lock
/// held by the transaction that wrote it.
fn outcome_of(found: QueryResult<bool>) -> QueryResult<Outcome> {
    match found {
        Ok(false) => Ok(Outcome::Aborted),
        Ok(true) => Ok(Outcome::Committed),
        Err(e) if lock_busy(&e) => Ok(Outcome::InProgress),
        Err(e) => Err(e),
    }
}

/// Whether the `KILL` (`kill_sql`) ended the session.
fn killed(done: QueryResult<()>) -> QueryResult<bool> {
    match done {
        Ok(()) => Ok(true),
        // Gone meanwhile ("Unknown thread id"), or not ours to kill.
        Err(DieselError::DatabaseError(..)) => Ok(false),
        Err(e) => Err(e),
    }
}

// The rows, and what they mean, for both drivers.
#[cfg(any(feature = "mysql", feature = "async-mysql"))]
mod rows {
    use std::time::Duration;

    use diesel::sql_types::BigInt;
    use diesel::QueryableByName;

    use super::super::super::LostSession;

    #[derive(QueryableByName)]
    pub(super) struct Id {
        #[diesel(sql_type = BigInt)]
        pub id: i64,
    }

    /// What `session_sql` returns.
    #[derive(QueryableByName)]
    pub(super) struct Session {
        #[diesel(sql_type = BigInt)]
        uptime: i64,
        #[diesel(sql_type = BigInt)]
        mine: i64,
    }

    impl Session {
        /// The lost session may be `KILL`ed: asked only while the marker's
        /// lock is held, that is while the session that wrote it is alive
        /// on this server; and only when the server has been up longer than
        /// the lost connection has existed (after a restart the ids start
        /// again, and another session may carry the old one: the resolver
        /// asks again at its next poll) and the session is this user's.
        pub(super) fn may_end(&self, lost: &LostSession) -> bool {
            // Whole seconds, rounded down: a server up longer than this has
            // been up longer than the connection existed.
            let up = Duration::from_secs(u64::try_from(self.uptime).unwrap_or(0));
            up > lost.opened.elapsed() && self.mine == 1
        }
    }

    pub(super) fn ids(rows: &[Id]) -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    }
}

#[cfg(feature = "mysql")]
pub(super) use driver::*;

/// On `MysqlConnection`.
#[cfg(feature = "mysql")]
mod driver {
    use diesel::connection::SimpleConnection;
    use diesel::{MysqlConnection, QueryResult, RunQueryDsl};

    use super::super::super::LostSession;
    use super::rows::{ids, Id, Session};
    use super::*;

    /// Creates the table if it is missing (asked first: `CREATE TABLE IF NOT
    /// EXISTS` needs the right to create even when the table is there) and
    /// deletes stale markers.
    pub(crate) fn create(conn: &mut MysqlConnection) -> QueryResult<()> {
        if diesel::sql_query(probe_sql()).execute(conn).is_err() {
            conn.batch_execute(CREATE_SQL)?;
        }
        let stale: Vec<Id> = diesel::sql_query(stale_sql()).load(conn)?;
        forget(conn, &ids(&stale))
    }

    pub(crate) fn forget(conn: &mut MysqlConnection, ids: &[i64]) -> QueryResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        diesel::sql_query(forget_sql(ids)).execute(conn).map(drop)
    }

    pub(crate) fn outcome(conn: &mut MysqlConnection, id: i64) -> QueryResult<Outcome> {
        let found = diesel::sql_query(check_sql(id)).load::<Id>(conn);
        outcome_of(found.map(|rows| !rows.is_empty()))
    }

    /// `KILL`s the lost session when it is still there and certainly the
    /// one ([`Session::may_end`]).
    pub(crate) fn end_session(conn: &mut MysqlConnection, lost: &LostSession) -> QueryResult<bool> {
        let Some(id) = lost.id else {
            return Ok(false);
        };
        let s: Session = diesel::sql_query(session_sql(lost.flavor, id)).get_result(conn)?;
        if !s.may_end(lost) {
            return Ok(false);
        }
        killed(conn.batch_execute(&kill_sql(id)))
    }
}

#[cfg(feature = "async-mysql")]
pub(super) use async_driver::*;

/// The same on `AsyncMysqlConnection`.
#[cfg(feature = "async-mysql")]
mod async_driver {
    use diesel::QueryResult;
    use diesel_async::{AsyncMysqlConnection, RunQueryDsl, SimpleAsyncConnection};

    use super::super::super::LostSession;
    use super::rows::{ids, Id, Session};
    use super::*;

    pub(crate) async fn create_async(conn: &mut AsyncMysqlConnection) -> QueryResult<()> {
        if diesel::sql_query(probe_sql()).execute(conn).await.is_err() {
            conn.batch_execute(CREATE_SQL).await?;
        }
        let stale: Vec<Id> = diesel::sql_query(stale_sql()).load(conn).await?;
        forget_async(conn, &ids(&stale)).await
    }

    pub(crate) async fn forget_async(
        conn: &mut AsyncMysqlConnection,
        ids: &[i64],
    ) -> QueryResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        diesel::sql_query(forget_sql(ids))
            .execute(conn)
            .await
            .map(drop)
    }

    pub(crate) async fn outcome_async(
        conn: &mut AsyncMysqlConnection,
        id: i64,
    ) -> QueryResult<Outcome> {
        let found = diesel::sql_query(check_sql(id)).load::<Id>(conn).await;
        outcome_of(found.map(|rows| !rows.is_empty()))
    }

    pub(crate) async fn end_session_async(
        conn: &mut AsyncMysqlConnection,
        lost: &LostSession,
    ) -> QueryResult<bool> {
        let Some(id) = lost.id else {
            return Ok(false);
        };
        let s: Session = diesel::sql_query(session_sql(lost.flavor, id))
            .get_result(conn)
            .await?;
        if !s.may_end(lost) {
            return Ok(false);
        }
        killed(conn.batch_execute(&kill_sql(id)).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql() {
        assert_eq!(
            begin_with_marker("START TRANSACTION", -7),
            "START TRANSACTION; INSERT INTO db_txn_commit_markers (id) VALUES (-7)"
        );
        assert_eq!(
            forget_sql(&[1, -2]),
            "DELETE FROM db_txn_commit_markers WHERE id IN (1, -2)"
        );
        assert!(check_sql(5).ends_with("WHERE id = 5 FOR UPDATE NOWAIT"));
        assert!(session_sql(Flavor::Mysql, 3).contains("performance_schema.global_status"));
        assert!(session_sql(Flavor::MariaDb, 3).contains("information_schema.GLOBAL_STATUS"));
        assert!(stale_sql().contains("INTERVAL 1 DAY LIMIT 1000"));
        assert_eq!(kill_sql(12), "KILL CONNECTION 12");
        assert_eq!(probe_sql(), "SELECT id FROM db_txn_commit_markers LIMIT 0");
    }

    #[test]
    fn the_documented_migration_is_what_the_pool_runs() {
        let docs = include_str!("../../../OPTIONS.md");
        assert!(
            docs.contains(CREATE_SQL),
            "OPTIONS.md must show {CREATE_SQL}"
        );
    }

    #[test]
    fn what_the_answers_mean() {
        let e = |kind, m: &str| DieselError::DatabaseError(kind, Box::new(m.to_string()));
        assert_eq!(outcome_of(Ok(true)), Ok(Outcome::Committed));
        assert_eq!(outcome_of(Ok(false)), Ok(Outcome::Aborted));
        let held = e(DatabaseErrorKind::Unknown, "Lock wait timeout exceeded");
        assert_eq!(outcome_of(Err(held)), Ok(Outcome::InProgress));
        assert!(outcome_of(Err(DieselError::NotFound)).is_err());
        assert_eq!(killed(Ok(())), Ok(true));
        let gone = e(DatabaseErrorKind::Unknown, "Unknown thread id: 12");
        assert_eq!(killed(Err(gone)), Ok(false));
        assert!(killed(Err(DieselError::BrokenTransactionManager)).is_err());
    }

    #[test]
    fn a_held_lock_is_told_apart() {
        let e = |kind, m: &str| DieselError::DatabaseError(kind, Box::new(m.to_string()));
        assert!(lock_busy(&e(
            DatabaseErrorKind::Unknown,
            "Lock wait timeout exceeded; try restarting transaction"
        )));
        assert!(lock_busy(&e(
            DatabaseErrorKind::Unknown,
            "Statement aborted because lock(s) could not be acquired immediately and NOWAIT is set."
        )));
        assert!(!lock_busy(&e(
            DatabaseErrorKind::Unknown,
            "Table 'test.db_txn_commit_markers' doesn't exist"
        )));
        assert!(!lock_busy(&e(
            DatabaseErrorKind::ClosedConnection,
            "Lock wait timeout exceeded"
        )));
    }
}
