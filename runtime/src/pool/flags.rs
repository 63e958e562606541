//! What is known about one connection's health, written by its
//! instrumentation while a statement runs and read by the runner and the
//! checkout policy; with the watchdog's [`Stamp`] on the same cache line.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::stamp::Stamp;
use crate::classify::Disconnect;

/// `repr(C)` and a line of its own: the stamp and the flags, which the
/// instrumentation and the runner touch around every statement, share the
/// first 64 bytes; the driver's error (read only after a disconnect) comes
/// after them.
#[derive(Default)]
#[repr(C, align(64))]
pub(crate) struct Flags {
    /// The statement in flight and the holder, for the watchdog.
    pub stamp: Stamp,
    /// 0: healthy; otherwise 1 + the index of the `Disconnect` seen.
    disconnect: AtomicU8,
    conflict: AtomicU8,
    /// A statement met a lock another connection holds (SQLite BUSY).
    busy: AtomicU8,
    /// Set when the connection must not be reused for another reason (a
    /// failed ROLLBACK, a failed session reset).
    discard: AtomicU8,
    /// Set when a statement starts; a raw user's connection that ran one is
    /// rolled back when it comes back (`reset.rs`).
    used: AtomicU8,
    /// The transaction in progress was begun `read_only`: a write refused
    /// as read-only is the body's own mistake there, not a role change.
    read_only_txn: AtomicU8,
    /// The driver's error that revealed the disconnect, for
    /// [`Error::Disconnected`](crate::Error::Disconnected).
    lost_by: OnceLock<LostBy>,
}

/// A copy of the driver error that revealed a disconnect.
#[derive(Debug, Clone)]
pub(crate) enum LostBy {
    Database(DatabaseErrorKind, String),
    BrokenTransactionManager,
}

impl LostBy {
    pub(crate) fn of(e: &DieselError) -> Option<LostBy> {
        match e {
            DieselError::DatabaseError(kind, info) => {
                Some(LostBy::Database(*kind, info.message().to_owned()))
            }
            DieselError::BrokenTransactionManager => Some(LostBy::BrokenTransactionManager),
            _ => None,
        }
    }

    pub(crate) fn to_diesel(&self) -> DieselError {
        match self {
            LostBy::Database(kind, message) => {
                DieselError::DatabaseError(*kind, Box::new(message.clone()))
            }
            LostBy::BrokenTransactionManager => DieselError::BrokenTransactionManager,
        }
    }
}

const DISCONNECTS: [Disconnect; 8] = [
    Disconnect::GoneAway,
    Disconnect::Lost,
    Disconnect::Killed,
    Disconnect::ServerShutdown,
    Disconnect::IdleTimeout,
    Disconnect::Closed,
    Disconnect::BrokenTransaction,
    Disconnect::ReadOnly,
];

impl Flags {
    /// Record a disconnect (the first cause is kept).
    pub(crate) fn set_disconnect(&self, d: Disconnect, by: Option<&DieselError>) {
        let code = DISCONNECTS.iter().position(|x| *x == d).unwrap_or(0) as u8 + 1;
        if self
            .disconnect
            .compare_exchange(0, code, Relaxed, Relaxed)
            .is_ok()
        {
            if let Some(by) = by.and_then(LostBy::of) {
                let _ = self.lost_by.set(by);
            }
        }
    }

    #[inline]
    pub(crate) fn disconnect(&self) -> Option<Disconnect> {
        match self.disconnect.load(Relaxed) {
            0 => None,
            n => DISCONNECTS.get(usize::from(n) - 1).copied(),
        }
    }

    /// The driver's error behind the disconnect, or one that stands for it.
    pub(crate) fn lost_error(&self) -> DieselError {
        match self.lost_by.get() {
            Some(by) => by.to_diesel(),
            None => gone(self.disconnect()),
        }
    }

    #[inline]
    pub(crate) fn set_busy(&self) {
        self.busy.store(1, Relaxed);
    }

    #[inline]
    pub(crate) fn take_busy(&self) -> bool {
        self.busy.load(Relaxed) != 0 && self.busy.swap(0, Relaxed) != 0
    }

    #[inline]
    pub(crate) fn set_conflict(&self) {
        self.conflict.store(1, Relaxed);
    }

    #[inline]
    pub(crate) fn take_conflict(&self) -> bool {
        // A load first: a swap is a locked instruction, paid on every call.
        self.conflict.load(Relaxed) != 0 && self.conflict.swap(0, Relaxed) != 0
    }

    #[inline]
    pub(crate) fn mark_used(&self) {
        self.used.store(1, Relaxed);
    }

    /// Whether a statement ran since the last call.
    #[inline]
    pub(crate) fn take_used(&self) -> bool {
        self.used.swap(0, Relaxed) != 0
    }

    #[inline]
    pub(crate) fn set_read_only_txn(&self, on: bool) {
        self.read_only_txn.store(u8::from(on), Relaxed);
    }

    #[inline]
    pub(crate) fn read_only_txn(&self) -> bool {
        self.read_only_txn.load(Relaxed) != 0
    }

    #[inline]
    pub(crate) fn set_discard(&self) {
        self.discard.store(1, Relaxed);
    }

    /// Never hand this connection out again.
    #[inline]
    pub(crate) fn unusable(&self) -> bool {
        self.disconnect.load(Relaxed) != 0 || self.discard.load(Relaxed) != 0
    }
}

/// A diesel error standing for a disconnect seen earlier on the connection.
pub(crate) fn gone(d: Option<Disconnect>) -> DieselError {
    let msg = match d {
        Some(d) => format!("connection lost earlier: {d}"),
        None => "connection discarded after a failed ROLLBACK or reset".to_owned(),
    };
    DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, Box::new(msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_disconnect_and_its_error() {
        let f = Flags::default();
        assert_eq!(f.disconnect(), None);
        let killed = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("Connection was killed".to_string()),
        );
        f.set_disconnect(Disconnect::Killed, Some(&killed));
        f.set_disconnect(Disconnect::Lost, None);
        assert_eq!(f.disconnect(), Some(Disconnect::Killed));
        assert_eq!(f.lost_error().to_string(), "Connection was killed");
        for d in DISCONNECTS {
            let f = Flags::default();
            f.set_disconnect(d, None);
            assert_eq!(f.disconnect(), Some(d));
            assert!(f.unusable());
        }
    }
}
