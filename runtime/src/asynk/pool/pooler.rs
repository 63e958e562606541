//! An async pool behind a transaction-mode pooler (pgbouncer
//! `pool_mode = transaction`): the builder's setting, and how the pool's
//! own reads outside a call's transaction stay on one server session.
//!
//! diesel-async runs every statement of its query builder, and every
//! `sql_query`, as a tokio-postgres *named* statement (`s0`, `s1`, ...):
//! one round trip prepares it (Parse, Describe, Sync), another runs it
//! (Bind, Execute, Sync), and dropping it closes it. With its statement
//! cache off no statement outlives the query that prepared it, so inside a
//! transaction (where the pooler keeps the server session the client's)
//! all of it reaches one session. Outside a transaction the pooler may hand
//! the run to another session than the prepare, which does not know the
//! name: the pool's own reads there run inside a transaction of their own
//! ([`own_read`]).

use super::builder::AsyncPoolBuilder;
use crate::backend::AsyncTxnConnection;
use diesel::QueryResult;

impl<C: AsyncTxnConnection> AsyncPoolBuilder<C> {
    /// The server is reached through a transaction-mode pooler (pgbouncer
    /// `pool_mode = transaction`, or any pooler that gives each transaction
    /// whichever server session is free), as
    /// [`PoolBuilder::transaction_pooler`](crate::PoolBuilder::transaction_pooler).
    /// Default off.
    ///
    /// In that mode a server session is the client's only for one
    /// transaction, so the pool keeps nothing in it between transactions:
    ///
    /// * diesel-async's prepared-statement cache is off on every connection
    ///   the pool opens: a statement cached in one transaction would be
    ///   missing, or another client's, in the next. pgbouncer before 1.21
    ///   (Debian's is 1.18) has no protocol-level prepared statements:
    ///   through it, with the cache on, 11–157 of the 200 calls of the
    ///   test `pgbouncer_calls_clean` failed (eleven runs, ten of them
    ///   over 75) with `prepared statement "s877" does not exist`; with this
    ///   setting, none.
    /// * The pool's own reads outside a call (the server's settings at
    ///   connect, the role check, the questions about a lost COMMIT:
    ///   `pgbouncer_lost_commit_resolved`) run in a transaction of their
    ///   own; the checkout ping is a simple query,
    ///   and the liveness probe asks only whether the server answers (a
    ///   session id means nothing there).
    /// * diesel-async prepares a statement by name (tokio-postgres's `s0`,
    ///   `s1`, ...) in a round trip of its own even with the cache off, and
    ///   runs it in another: inside a transaction both reach one server
    ///   session, outside one the pooler may send them to two. So run
    ///   queries through a pooler in a transaction (a `#[db_txn]`
    ///   function), not on a bare [`AsyncPool::get`](super::AsyncPool::get)
    ///   connection, and keep the [`on_connect`](Self::on_connect) hook to
    ///   `batch_execute`. diesel-async's own set-up of a new connection
    ///   (`SET TIME ZONE`, `SET CLIENT_ENCODING`, prepared outside any
    ///   transaction) meets that mix-up under load; such a connect is tried
    ///   again at once, up to 10 times.
    ///
    /// What this setting cannot lift: the statement that closes one of
    /// those set-up statements may reach another server session than the
    /// one that prepared it, which then keeps a statement named `s<N>`.
    /// Another process on the same pgbouncer (or this program, restarted)
    /// names its statements `s0`, `s1`, ... too, and a call that prepares
    /// such a name on that session fails with `prepared statement "s<N>"
    /// already exists` (nothing of it applied, not retried; test
    /// `pgbouncer_statement_names_left_by_another_process`, with such
    /// leftovers planted, 12–103 of 200 calls failed in three runs). One
    /// process alone never meets its own leftovers (its names do not
    /// repeat); pgbouncer's `server_reset_query_always = 1` is no cure (its
    /// `DISCARD ALL` then lands between the set-up's prepare and its run:
    /// no connection opens at all). A pooler that handles protocol-level
    /// prepared statements itself (pgbouncer 1.21 and later with
    /// `max_prepared_statements`; not tried here) has neither problem.
    ///
    /// What does not work through such a pooler, with or without db_txn:
    /// anything that must outlive a transaction on the session. Use the
    /// transaction-scoped form instead: `SET LOCAL` rather than `SET` (the
    /// `on_connect` hook runs once per client connection, not per server
    /// session, so session settings there do not stick),
    /// `pg_advisory_xact_lock` rather than `pg_advisory_lock`, no `LISTEN`,
    /// no `PREPARE`, no temporary table kept across calls. db_txn's own
    /// settings are transaction-scoped on PostgreSQL (`SET LOCAL`); on
    /// MariaDB/MySQL a statement timeout is a session setting, so
    /// `#[db_txn(timeout = ...)]` is refused there
    /// ([`Error::Unsupported`](crate::Error::Unsupported)).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), db_txn::Error> {
    /// use diesel_async::AsyncPgConnection;
    /// let pool = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@pgbouncer:6432/app")
    ///     .transaction_pooler(true)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn transaction_pooler(mut self, on: bool) -> Self {
        self.config.transaction_pooler = on;
        self
    }
}

/// How many times a new connection is tried at once when its set-up met
/// the pooler's mix-up ([`mixed_up`]).
pub(crate) const SETUP_TRIES: u32 = 10;

/// The driver's own set-up of a new connection (diesel-async's `SET TIME
/// ZONE` and `SET CLIENT_ENCODING`, prepared outside any transaction) failed
/// because the pooler ran a statement on another server session than the
/// one that prepared it (`prepared statement "s5" does not exist`), or on
/// one that holds a statement of that name another process left (`...
/// already exists`). A new connection prepares under new names.
pub(crate) fn mixed_up(e: &diesel::ConnectionError) -> bool {
    let diesel::ConnectionError::CouldntSetupConfiguration(diesel::result::Error::DatabaseError(
        _,
        info,
    )) = e
    else {
        return false;
    };
    let message = info.message();
    message.starts_with("prepared statement \"")
        && (message.ends_with("does not exist") || message.ends_with("already exists"))
}

/// A read of the pool's own (`read`, outside any call's transaction) on
/// `conn`: behind a transaction pooler, inside a transaction of its own, so
/// that the pooler keeps one server session for the read's prepare and its
/// run; as it is otherwise.
pub(crate) async fn own_read<C: AsyncTxnConnection, T>(
    conn: &mut C,
    behind_pooler: bool,
    read: impl AsyncFnOnce(&mut C) -> QueryResult<T>,
) -> QueryResult<T> {
    if !behind_pooler {
        return read(conn).await;
    }
    begin(conn).await?;
    let answer = read(conn).await;
    end(conn, answer).await
}

/// Open the transaction of [`own_read`] ([`end`] closes it). Simple
/// queries: nothing prepared.
async fn begin<C: AsyncTxnConnection>(conn: &mut C) -> QueryResult<()> {
    conn.batch_execute("BEGIN").await
}

/// Close the transaction [`begin`] opened, after a read that gave `read`:
/// COMMIT after a success, ROLLBACK after a failure (whose error is the
/// one returned; the caller drops the connection).
async fn end<C: AsyncTxnConnection, T>(conn: &mut C, read: QueryResult<T>) -> QueryResult<T> {
    match read {
        Ok(value) => {
            conn.batch_execute("COMMIT").await?;
            Ok(value)
        }
        Err(e) => {
            let _ = conn.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::result::{DatabaseErrorKind, Error};
    use diesel::ConnectionError;

    use super::mixed_up;

    fn setup(message: &str) -> ConnectionError {
        ConnectionError::CouldntSetupConfiguration(Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(message.to_owned()),
        ))
    }

    #[test]
    fn only_a_set_up_statement_the_pooler_mixed_up() {
        assert!(mixed_up(&setup(
            r#"prepared statement "s5" does not exist"#
        )));
        assert!(mixed_up(&setup(
            r#"prepared statement "s0" already exists"#
        )));
        assert!(!mixed_up(&setup("permission denied for database app")));
        assert!(!mixed_up(&ConnectionError::BadConnection(
            r#"prepared statement "s5" does not exist"#.into()
        )));
    }
}
