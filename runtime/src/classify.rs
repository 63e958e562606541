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
