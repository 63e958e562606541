//! The body returned `Err` or panicked: the ROLLBACK, out of line (an
//! error is not the path to lay out for; a panic is cold).

use diesel::connection::TransactionManager;

use super::{reset_session, Attempt, Tm};
use crate::backend::{TxnConnection, TxnSql};
use crate::pool::flags::Flags;
use crate::stats::Counters;

/// The body returned `Err` or panicked: counted and logged.
#[inline(never)]
pub(super) fn rolling_back(counters: &Counters, panicked: bool) {
    Counters::bump(&counters.rollbacks);
    if panicked {
        tracing::warn!(target: "db_txn", cause = "panic", "rollback");
    } else {
        tracing::debug!(target: "db_txn", cause = "error", "rollback");
    }
}

/// The body returned `Err`: ROLLBACK. Out of line (an error is not the
/// path to lay out for), but not cold: an error can be a common answer.
#[inline(never)]
pub(super) fn body_failed<C: TxnConnection, T, E>(
    conn: &mut C,
    flags: &Flags,
    sql: &TxnSql,
    user_error: E,
) -> Attempt<T, E> {
    let rolled_back = Tm::rollback_transaction(conn);
    if let Some(kind) = flags.disconnect() {
        // The body's error was (or followed) the lost connection.
        drop(user_error);
        return Attempt::Lost {
            kind,
            source: flags.lost_error(),
        };
    }
    if rolled_back.is_err() {
        flags.set_discard();
        return Attempt::Done(Err(user_error));
    }
    reset_session(conn, flags, sql);
    if flags.take_conflict() {
        Attempt::Conflict(Err(user_error))
    } else {
        Attempt::Done(Err(user_error))
    }
}

/// The body panicked: ROLLBACK, then the panic goes on.
#[cold]
#[inline(never)]
pub(super) fn body_panicked<C: TxnConnection, T, E>(
    conn: &mut C,
    flags: &Flags,
    sql: &TxnSql,
    payload: Box<dyn std::any::Any + Send>,
) -> Attempt<T, E> {
    if Tm::rollback_transaction(conn).is_err() {
        flags.set_discard();
    } else {
        reset_session(conn, flags, sql);
    }
    Attempt::Panicked(payload)
}
