//! A COMMIT that failed: what the failure means. The same rule for the sync
//! and the async runner, which each do their own I/O around it (resolving a
//! lost COMMIT, resetting the session).

use diesel::result::Error as DieselError;

use crate::backend::Backend;
use crate::classify::{Disconnect, ErrorClass};
use crate::error::Step;
use crate::pool::flags::Flags;
use crate::stats::Counters;
use crate::{Error, Options};

/// What a failed COMMIT means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    /// Refused by a server that became read-only (MariaDB/MySQL 1290):
    /// rolled back, a definite answer. The body runs again on a writable
    /// server.
    ReadOnly,
    /// The connection was lost with COMMIT in flight: the outcome is unknown,
    /// unless the call resolves it.
    Lost(Disconnect),
    /// A definite failure (a serialization failure found at COMMIT, say):
    /// diesel rolled the transaction back. `conflict`: the error itself is
    /// a conflict (the statement hook may also have seen one).
    Definite { conflict: bool },
}

/// The COMMIT's own error (diesel reports a failed COMMIT whose ROLLBACK
/// failed too as one error), and what it means. A connection that cannot be
/// reused after it is marked to be discarded.
pub(crate) fn meaning(backend: Backend, flags: &Flags, e: DieselError) -> (DieselError, Meaning) {
    let commit_error = match e {
        DieselError::RollbackErrorOnCommit { commit_error, .. } => *commit_error,
        e => e,
    };
    let class = crate::classify(backend, &commit_error);
    let meaning = if class == ErrorClass::Disconnect(Disconnect::ReadOnly)
        || flags.disconnect() == Some(Disconnect::ReadOnly)
    {
        Meaning::ReadOnly
    } else if let Some(kind) = flags.disconnect().or(match class {
        ErrorClass::Disconnect(kind) => Some(kind),
        _ => None,
    }) {
        Meaning::Lost(kind)
    } else {
        return (
            commit_error,
            Meaning::Definite {
                conflict: class == ErrorClass::Conflict,
            },
        );
    };
    flags.set_discard();
    (commit_error, meaning)
}

/// A lost COMMIT as the commit watch saw it: `Ok`, one the call resolves;
/// `Err`, one it cannot (the COMMIT's error), which is counted, logged and
/// becomes the caller's [`Error::CommitUnknown`].
pub(crate) fn resolvable<L>(
    counters: &Counters,
    options: &Options,
    watched: Result<L, DieselError>,
) -> Result<L, Error> {
    watched.map_err(|commit_error| {
        Counters::bump(&counters.commit_unknowns);
        tracing::error!(
            target: "db_txn",
            error = %commit_error,
            "connection lost during COMMIT: the outcome is unknown, not retried"
        );
        Error::CommitUnknown {
            function: options.name,
            source: commit_error,
        }
    })
}

/// A definite failure, once the session is reset: whether the call may run
/// again as a conflict, and its error.
pub(crate) fn definite<T, E: From<Error>>(
    flags: &Flags,
    conflict: bool,
    options: &Options,
    commit_error: DieselError,
) -> (bool, Result<T, E>) {
    let conflict = flags.take_conflict() || conflict;
    let error = super::step_error(options, Step::Commit, commit_error);
    (conflict, Err(error.into()))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use diesel::result::DatabaseErrorKind;

    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn a_serialization_failure_is_a_definite_conflict() {
        let flags = Flags::default();
        let e = database_error(
            DatabaseErrorKind::SerializationFailure,
            "could not serialize",
        );
        let (_, meaning) = meaning(Backend::Postgres, &flags, e);
        assert_eq!(meaning, Meaning::Definite { conflict: true });
        assert!(!flags.unusable(), "a definite failure keeps the connection");
    }

    #[test]
    fn a_loss_seen_by_the_hook_makes_the_outcome_unknown() {
        let flags = Flags::default();
        flags.set_disconnect(Disconnect::Closed, None);
        let e = database_error(DatabaseErrorKind::Unknown, "no answer");
        let (_, meaning) = meaning(Backend::Postgres, &flags, e);
        assert_eq!(meaning, Meaning::Lost(Disconnect::Closed));
        assert!(flags.unusable());
    }

    #[test]
    fn a_read_only_refusal_is_rolled_back_and_unwrapped() {
        let flags = Flags::default();
        flags.set_disconnect(Disconnect::ReadOnly, None);
        let e = DieselError::RollbackErrorOnCommit {
            rollback_error: Box::new(DieselError::BrokenTransactionManager),
            commit_error: Box::new(database_error(DatabaseErrorKind::Unknown, "read-only")),
        };
        let (commit_error, meaning) = meaning(Backend::Mysql, &flags, e);
        assert_eq!(meaning, Meaning::ReadOnly);
        assert!(
            commit_error.to_string().contains("read-only"),
            "{commit_error}"
        );
        assert!(flags.unusable());
    }

    #[test]
    fn an_unresolvable_loss_is_counted_and_unknown() {
        let counters = Counters::default();
        let options = Options::new("transfer");
        let resolved = resolvable(&counters, &options, Ok::<u8, DieselError>(7));
        assert!(matches!(resolved, Ok(7)));
        assert_eq!(counters.commit_unknowns.load(Relaxed), 0);
        let lost = resolvable::<u8>(
            &counters,
            &options,
            Err(database_error(DatabaseErrorKind::ClosedConnection, "gone")),
        );
        assert!(
            matches!(
                &lost,
                Err(Error::CommitUnknown {
                    function: "transfer",
                    ..
                })
            ),
            "{lost:?}"
        );
        assert_eq!(counters.commit_unknowns.load(Relaxed), 1);
    }

    #[test]
    fn a_definite_failure_is_a_conflict_when_the_hook_saw_one() {
        let flags = Flags::default();
        flags.set_conflict();
        let options = Options::new("f");
        let (conflict, result) = definite::<(), Error>(
            &flags,
            false,
            &options,
            DieselError::BrokenTransactionManager,
        );
        assert!(conflict);
        assert!(matches!(
            result,
            Err(Error::Transaction {
                step: Step::Commit,
                ..
            })
        ));
    }
}
