//! Calls that join a connection lent on this thread ([`crate::lend`]): a
//! SAVEPOINT when the connection is in a transaction, a transaction of their
//! own on it otherwise. They never retry: the owner of the transaction (or of
//! the connection) decides what a lost connection means.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use diesel::connection::{AnsiTransactionManager, TransactionManager};

use super::{step_error, unsupported};
use crate::backend::{txn_sql, ServerInfo, TxnConnection, TxnSql};
use crate::classify::{Disconnect, ErrorClass};
use crate::error::{Setting, Step};
use crate::session::Lent;
use crate::{Error, Options};

type Tm = AnsiTransactionManager;

/// A call that joins a connection lent on this thread. Out of line: the
/// outermost call's path is laid out without it.
#[inline(never)]
pub(super) fn join<C, T, E, F>(lent: Lent, options: &Options, body: &mut F) -> Result<T, E>
where
    C: TxnConnection,
    E: From<Error>,
    F: FnMut(&mut C) -> Result<T, E>,
{
    if lent.inherited {
        // Lent in the parent, before a fork: the parent's connection.
        return Err(Error::Forked {
            function: options.name,
        }
        .into());
    }
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
    let span = tracing::info_span!(
        target: "db_txn",
        "db_txn",
        function = options.name,
        joined = lent.holder
    );
    let _entered = span.enter();
    // SAFETY: `lookup::<C>` matched the entry's `TypeId` with `C`, and `conn`
    // does not outlive `_claim`.
    let (conn, _claim) = unsafe { lent.claim::<C>(options.name) };
    let nested = matches!(
        Tm::transaction_manager_status_mut(conn).transaction_depth(),
        Ok(Some(_))
    );
    let sql = if nested {
        Tm::begin_transaction(conn).map_err(|e| step_error(options, Step::Savepoint, e))?;
        None
    } else {
        // A connection lent from outside, not in a transaction: begin one.
        // Only a statement timeout depends on what the server is, so only
        // then is it asked (MariaDB and MySQL spell it differently).
        let server = if options.timeout.is_some() {
            conn.server_info()
                .map_err(|e| step_error(options, Step::Begin, e))?
        } else {
            ServerInfo::default()
        };
        let sql = txn_sql::<C>(&server, options, true)
            .map_err(|detail| unsupported::<C>(options, detail))?;
        Tm::begin_transaction_sql(conn, &sql.begin)
            .map_err(|e| step_error(options, Step::Begin, e))?;
        Some(sql)
    };
    match catch_unwind(AssertUnwindSafe(|| body(conn))) {
        Ok(Ok(value)) => match Tm::commit_transaction(conn) {
            Ok(()) => {
                finish_outside(conn, sql.as_ref());
                Ok(value)
            }
            // A COMMIT refused as read-only is a definite rollback, reported
            // as a failed COMMIT below.
            Err(e)
                if !nested
                    && matches!(
                        crate::classify(C::BACKEND, &e),
                        ErrorClass::Disconnect(d) if d != Disconnect::ReadOnly
                    ) =>
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
            if Tm::rollback_transaction(conn).is_ok() {
                finish_outside(conn, sql.as_ref());
            }
            Err(user_error)
        }
        Err(payload) => {
            if Tm::rollback_transaction(conn).is_ok() {
                finish_outside(conn, sql.as_ref());
            }
            resume_unwind(payload)
        }
    }
}

/// Reset session settings after a top-level transaction on a lent connection.
fn finish_outside<C: TxnConnection>(conn: &mut C, sql: Option<&TxnSql>) {
    if let Some(after) = sql.and_then(|s| s.after) {
        // Not our connection to discard; its owner sees the next error.
        let _ = conn.batch_execute(after);
    }
}
