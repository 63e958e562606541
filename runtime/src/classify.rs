//! Which errors mean "the connection is gone" and which mean "try again".
//!
//! This module holds the vocabulary ([`Disconnect`], [`ErrorClass`]); the
//! tables are each backend's own (`backend/*/errors.rs`), and the public
//! entry, [`classify`](crate::classify), dispatches to them from
//! `backend/mod.rs`.
//!
//! A pool can put its own rule in front of these with
//! [`PoolBuilder::classify`](crate::PoolBuilder::classify).

use std::fmt;

/// How a connection was found to be lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Disconnect {
    /// MySQL 2006 "server has gone away": the socket was closed, typically by
    /// the server's `wait_timeout`, a restart, or a proxy.
    GoneAway,
    /// MySQL 2013/2055 "lost connection during query", or PostgreSQL's
    /// "server closed the connection unexpectedly".
    Lost,
    /// The server killed this connection (MySQL `KILL` / 1927, PostgreSQL
    /// `pg_terminate_backend` / 57P01).
    Killed,
    /// The server is shutting down or starting up (MySQL 1053, PostgreSQL
    /// 57P02/57P03).
    ServerShutdown,
    /// The server dropped the connection for inactivity (MySQL 8 error 4031).
    IdleTimeout,
    /// The client library reports the link closed or unusable (PostgreSQL
    /// `ClosedConnection`, `UnableToSendCommand`, class 08; MySQL 2014).
    Closed,
    /// diesel's transaction manager is broken after an earlier failure.
    BrokenTransaction,
    /// The server refused a write because it is read-only now: the primary
    /// was demoted or fenced, or a failover moved the primary elsewhere
    /// (PostgreSQL 25006 in a transaction that is not `read_only`;
    /// MariaDB/MySQL 1290 `--read-only` / `--super-read-only`, 1836). The
    /// connection is on the wrong server: it is discarded, the pool's other
    /// connections are checked for their role before their next use, and
    /// the body runs again on a writable server. Refused at COMMIT, the
    /// transaction was rolled back: it runs again too, it is never an
    /// unknown outcome.
    ///
    /// ```
    /// use db_txn::{classify, Backend, Disconnect, ErrorClass};
    /// use diesel::result::{DatabaseErrorKind, Error};
    /// let refused = Error::DatabaseError(
    ///     DatabaseErrorKind::Unknown,
    ///     Box::new(
    ///         "The MariaDB server is running with the --read-only option so it cannot execute \
    ///          this statement"
    ///             .to_string(),
    ///     ),
    /// );
    /// assert_eq!(classify(Backend::Mysql, &refused), ErrorClass::Disconnect(Disconnect::ReadOnly));
    /// ```
    ReadOnly,
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Disconnect::GoneAway => "server has gone away",
            Disconnect::Lost => "lost connection during query",
            Disconnect::Killed => "connection killed by the server",
            Disconnect::ServerShutdown => "server shutting down",
            Disconnect::IdleTimeout => "disconnected for inactivity",
            Disconnect::Closed => "connection closed",
            Disconnect::BrokenTransaction => "transaction manager broken",
            Disconnect::ReadOnly => "server is read-only: not the primary (any more)",
        })
    }
}

/// What an error means for the transaction that saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The connection is gone: discard it; the transaction did not commit.
    Disconnect(Disconnect),
    /// A deadlock or serialization failure: the transaction was rolled back and
    /// may succeed if run again (`retry_conflicts`).
    Conflict,
    /// Anything else: the user's business.
    Other,
}
