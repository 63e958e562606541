//! The body returned `Err` or panicked: the ROLLBACK, out of line (an
//! error is not the path to lay out for; a panic is cold).

use diesel::connection::TransactionManager;

use super::{reset_session, Attempt, Tm};
use crate::backend::{TxnConnection, TxnSql};
use crate::classify::Disconnect;
use crate::pool::flags::Flags;
use crate::stats::Counters;

/// The body returned `Err` or panicked: counted and logged.
#[inline(never)]
pub(crate) fn rolling_back(counters: &Counters, panicked: bool) {
    Counters::bump(&counters.rollbacks);
    if panicked {
        tracing::warn!(target: "db_txn", cause = "panic", "rollback");
    } else {
        tracing::debug!(target: "db_txn", cause = "error", "rollback");
    }
}

/// What the body's `Err` means once ROLLBACK was sent: the same rule for the
/// sync and the async runner, which each send the ROLLBACK and reset the
/// session themselves.
pub(crate) enum AfterError<E> {
    /// The body's error was (or followed) the lost connection: nothing was
    /// committed, the body may run again.
    Lost {
        kind: Disconnect,
        source: diesel::result::Error,
    },
    /// ROLLBACK failed: the connection is not reused; the body's error is
    /// the call's.
    Discarded(E),
    /// Rolled back: the session is to be reset, then the body's error is the
    /// call's, or a conflict to retry if the statement hook saw one.
    RolledBack(E),
}

/// See [`AfterError`]; `rolled_back`: the ROLLBACK succeeded.
pub(crate) fn after_error<E>(flags: &Flags, rolled_back: bool, user_error: E) -> AfterError<E> {
    if let Some(kind) = flags.disconnect() {
        drop(user_error);
        return AfterError::Lost {
            kind,
            source: flags.lost_error(),
        };
    }
    if !rolled_back {
        flags.set_discard();
        return AfterError::Discarded(user_error);
    }
    AfterError::RolledBack(user_error)
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
    let rolled_back = Tm::rollback_transaction(conn).is_ok();
    match after_error(flags, rolled_back, user_error) {
        AfterError::Lost { kind, source } => Attempt::Lost { kind, source },
        AfterError::Discarded(user_error) => Attempt::Done(Err(user_error)),
        AfterError::RolledBack(user_error) => {
            reset_session(conn, flags, sql);
            if flags.take_conflict() {
                Attempt::Conflict(Err(user_error))
            } else {
                Attempt::Done(Err(user_error))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_on_a_lost_connection_is_a_loss() {
        let flags = Flags::default();
        flags.set_disconnect(Disconnect::Killed, None);
        assert!(matches!(
            after_error(&flags, true, "body"),
            AfterError::Lost {
                kind: Disconnect::Killed,
                ..
            }
        ));
    }

    #[test]
    fn a_failed_rollback_discards_the_connection() {
        let flags = Flags::default();
        assert!(matches!(
            after_error(&flags, false, "body"),
            AfterError::Discarded("body")
        ));
        assert!(flags.unusable());
    }

    #[test]
    fn a_clean_rollback_keeps_the_connection() {
        let flags = Flags::default();
        assert!(matches!(
            after_error(&flags, true, "body"),
            AfterError::RolledBack("body")
        ));
        assert!(!flags.unusable());
    }
}
