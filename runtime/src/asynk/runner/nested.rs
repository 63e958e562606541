//! Calls that join a connection lent in this task ([`lend_async`](crate::lend_async)):
//! a SAVEPOINT when the connection is in a transaction, a transaction of
//! their own on it otherwise. They never retry: the owner of the
//! transaction (or of the connection) decides what a lost connection means.
//! The async twin of `runner/nested.rs`.

use std::panic::resume_unwind;

use diesel_async::{AnsiTransactionManager, TransactionManager};

use super::unwind::CatchUnwind;
use crate::asynk::session::Lent;
use crate::backend::{AsyncTxnConnection, Dialect, ServerInfo, TxnSql};
use crate::classify::ErrorClass;
use crate::error::{Setting, Step};
use crate::runner::step_error;
use crate::{Error, Options};

type Tm = AnsiTransactionManager;

/// A call that joins a connection lent in this task.
pub(super) async fn join<C, T, E, F>(lent: Lent, options: &Options, body: F) -> Result<T, E>
where
    C: AsyncTxnConnection,
    E: From<Error>,
    F: AsyncFnOnce(&mut C) -> Result<T, E>,
{
    if let Some(joined) = lent.settings {
        let mismatch = if options.isolation.is_some() && options.isolation != joined.isolation {
            Some(Setting::Isolation)
        } else if options.timeout.is_some() && options.timeout != joined.timeout {
            Some(Setting::Timeout)
        } else {
            None
        };
        if let Some(setting) = mismatch {
            return Err(Error::NestedMismatch {
                function: options.name,
                holder: lent.holder,
                setting,
            }
            .into());
        }
    }
    let holder = lent.holder;
    // SAFETY: `lookup::<C>` matched the frame's `TypeId` with `C`, and `conn`
    // is used only inside `claim.guard(..)`.
    let Some((conn, claim)) = (unsafe { lent.claim::<C>(options.name) }) else {
        return Err(Error::ConnectionBorrowed {
            function: options.name,
            holder,
        }
        .into());
    };
    let span = tracing::info_span!(
        target: "db_txn",
        "db_txn",
        function = options.name,
        joined = holder
    );
    let joined = claim.guard(tracing::Instrument::instrument(
        in_transaction(conn, options, body),
        span,
    ));
    let result = joined.await;
    drop(claim);
    result
}

async fn in_transaction<C, T, E, F>(conn: &mut C, options: &Options, body: F) -> Result<T, E>
where
    C: AsyncTxnConnection,
    E: From<Error>,
    F: AsyncFnOnce(&mut C) -> Result<T, E>,
{
    let nested = matches!(
        Tm::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(Some(_))
    );
    let sql = if nested {
        Tm::begin_transaction(conn)
            .await
            .map_err(|e| step_error(options, Step::Savepoint, e))?;
        None
    } else {
        // A connection lent from outside, not in a transaction: begin one.
        // Only a statement timeout depends on what the server is.
        let server = if options.timeout.is_some() {
            conn.server_info()
                .await
                .map_err(|e| step_error(options, Step::Begin, e))?
        } else {
            ServerInfo::default()
        };
        let sql = <C::Dialect as Dialect>::txn_sql(&server, options, true).map_err(|detail| {
            Error::Unsupported {
                function: options.name,
                backend: C::BACKEND,
                detail,
            }
        })?;
        Tm::begin_transaction_sql(conn, &sql.begin)
            .await
            .map_err(|e| step_error(options, Step::Begin, e))?;
        Some(sql)
    };
    match CatchUnwind::new(body(&mut *conn)).await {
        Ok(Ok(value)) => match Tm::commit_transaction(conn).await {
            Ok(()) => {
                finish_outside(conn, sql.as_ref()).await;
                Ok(value)
            }
            Err(e)
                if !nested
                    && matches!(crate::classify(C::BACKEND, &e), ErrorClass::Disconnect(_)) =>
            {
                Err(Error::CommitUnknown {
                    function: options.name,
                    source: e,
                }
                .into())
            }
            Err(e) => Err(step_error(
                options,
                if nested {
                    Step::ReleaseSavepoint
                } else {
                    Step::Commit
                },
                e,
            )
            .into()),
        },
        Ok(Err(user_error)) => {
            // A failed ROLLBACK TO SAVEPOINT leaves diesel's manager asking the
            // outer level to roll back; the owner of the transaction sees it.
            if Tm::rollback_transaction(conn).await.is_ok() {
                finish_outside(conn, sql.as_ref()).await;
            }
            Err(user_error)
        }
        Err(payload) => {
            if Tm::rollback_transaction(conn).await.is_ok() {
                finish_outside(conn, sql.as_ref()).await;
            }
            resume_unwind(payload)
        }
    }
}

/// Reset session settings after a top-level transaction on a lent connection.
async fn finish_outside<C: AsyncTxnConnection>(conn: &mut C, sql: Option<&TxnSql>) {
    if let Some(after) = sql.and_then(|s| s.after) {
        // Not our connection to discard; its owner sees the next error.
        let _ = conn.batch_execute(after).await;
    }
}
