//! Which errors mean "the connection is gone" and which mean "try again".
//!
//! diesel keeps only the message of a MySQL/MariaDB error and maps none of the
//! client's disconnect codes to [`DatabaseErrorKind::ClosedConnection`], so the
//! MySQL table matches the texts of both client libraries (libmariadb and
//! libmysqlclient). PostgreSQL errors are classified by diesel's kind first and
//! by the server's (English) message second.
//!
//! A pool can put its own rule in front of these with
//! [`PoolBuilder::classify`](crate::PoolBuilder::classify).

use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::backend::Backend;

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

/// Classify `err` as seen on a connection of `backend`, by the built-in
/// rules (a pool's [`classify`](crate::PoolBuilder::classify) rule comes first
/// inside the pool).
///
/// ```
/// use db_txn::{classify, Backend, Disconnect, ErrorClass};
/// use diesel::result::{DatabaseErrorKind, Error};
/// let gone = Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new("Server has gone away".to_string()));
/// assert_eq!(classify(Backend::Mysql, &gone), ErrorClass::Disconnect(Disconnect::GoneAway));
/// assert_eq!(classify(Backend::Mysql, &Error::NotFound), ErrorClass::Other);
/// ```
pub fn classify(backend: Backend, err: &DieselError) -> ErrorClass {
    match err {
        DieselError::BrokenTransactionManager => {
            ErrorClass::Disconnect(Disconnect::BrokenTransaction)
        }
        DieselError::DatabaseError(kind, info) => match backend {
            Backend::Mysql => classify_mysql(*kind, info.message()),
            Backend::Postgres => classify_postgres(*kind, info.message()),
            Backend::Sqlite => classify_sqlite(*kind, info.message()),
        },
        _ => ErrorClass::Other,
    }
}

/// Message fragments of the client libraries and the server, with what they mean.
///
/// Produced by the real client (libmariadb 3, MariaDB 10.11) in
/// `tests/disconnect_texts.rs`: "Server has gone away" (after `wait_timeout`,
/// a statement after KILL, KILL or shutdown during a query) and "Lost
/// connection to server during query" (the first statement after KILL, a cut
/// link). The libmysqlclient spellings, 2014, 1927, 1053 and MySQL 8's 4031
/// come from the client and server sources: they are not produced by the
/// libmariadb client here.
const MYSQL_TEXTS: &[(&str, Disconnect)] = &[
    // 2006 CR_SERVER_GONE_ERROR: libmariadb / libmysqlclient
    ("Server has gone away", Disconnect::GoneAway),
    ("MySQL server has gone away", Disconnect::GoneAway),
    // 2013 CR_SERVER_LOST and 2055 CR_SERVER_LOST_EXTENDED ("... at '%s', system error: %d")
    ("Lost connection to server", Disconnect::Lost),
    ("Lost connection to MySQL server", Disconnect::Lost),
    // 2014 CR_COMMANDS_OUT_OF_SYNC: the protocol state is lost, the link is unusable
    ("Commands out of sync", Disconnect::Closed),
    // 1927 ER_CONNECTION_KILLED (MariaDB)
    ("Connection was killed", Disconnect::Killed),
    // 1053 ER_SERVER_SHUTDOWN
    ("Server shutdown in progress", Disconnect::ServerShutdown),
    // 4031 ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
    (
        "disconnected by the server because of inactivity",
        Disconnect::IdleTimeout,
    ),
    // 2002/2003: the server cannot be reached (seen on reconnect attempts)
    ("Can't connect to", Disconnect::Closed),
];

const MYSQL_CONFLICTS: &[&str] = &[
    // 1213 ER_LOCK_DEADLOCK (diesel maps it to SerializationFailure for prepared statements)
    "Deadlock found when trying to get lock",
];

fn classify_mysql(kind: DatabaseErrorKind, message: &str) -> ErrorClass {
    if let DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand = kind {
        return ErrorClass::Disconnect(Disconnect::Closed);
    }
    if let Some((_, d)) = MYSQL_TEXTS.iter().find(|(t, _)| message.contains(t)) {
        return ErrorClass::Disconnect(*d);
    }
    if kind == DatabaseErrorKind::SerializationFailure
        || MYSQL_CONFLICTS.iter().any(|t| message.contains(t))
    {
        return ErrorClass::Conflict;
    }
    ErrorClass::Other
}

/// Produced by libpq 15 in `tests/disconnect_texts.rs`: `ClosedConnection`
/// "server closed the connection unexpectedly" (after pg_terminate_backend, a
/// restart, idle_session_timeout, a cut link), then `UnableToSendCommand` "no
/// connection to the server", then `BrokenTransactionManager`. The 57P0x
/// texts are the server's own, matched when it reports them before closing.
const POSTGRES_TEXTS: &[(&str, Disconnect)] = &[
    // 57P01 admin_shutdown: pg_terminate_backend, or a fast/smart server stop
    (
        "terminating connection due to administrator command",
        Disconnect::Killed,
    ),
    // 57P02 crash_shutdown
    (
        "terminating connection because of crash of another server process",
        Disconnect::ServerShutdown,
    ),
    // 57P03 cannot_connect_now
    (
        "the database system is shutting down",
        Disconnect::ServerShutdown,
    ),
    (
        "the database system is starting up",
        Disconnect::ServerShutdown,
    ),
    (
        "the database system is in recovery mode",
        Disconnect::ServerShutdown,
    ),
    // idle_session_timeout (57P05) and idle_in_transaction_session_timeout (25P03)
    (
        "terminating connection due to idle",
        Disconnect::IdleTimeout,
    ),
    // libpq
    (
        "server closed the connection unexpectedly",
        Disconnect::Lost,
    ),
    ("no connection to the server", Disconnect::Closed),
    ("could not receive data from server", Disconnect::Lost),
    ("could not send data to server", Disconnect::Lost),
    (
        "SSL connection has been closed unexpectedly",
        Disconnect::Lost,
    ),
    ("connection to server", Disconnect::Closed),
];

fn classify_postgres(kind: DatabaseErrorKind, message: &str) -> ErrorClass {
    let by_text = POSTGRES_TEXTS.iter().find(|(t, _)| message.contains(t));
    match kind {
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
            ErrorClass::Disconnect(by_text.map_or(Disconnect::Closed, |(_, d)| *d))
        }
        DatabaseErrorKind::SerializationFailure => ErrorClass::Conflict,
        _ => match by_text {
            Some((_, d)) => ErrorClass::Disconnect(*d),
            // 40P01 deadlock_detected has no diesel kind of its own
            None if message.contains("deadlock detected") => ErrorClass::Conflict,
            None => ErrorClass::Other,
        },
    }
}

fn classify_sqlite(kind: DatabaseErrorKind, _message: &str) -> ErrorClass {
    // An embedded database has no link to lose; a closed handle is still a
    // connection that must not be reused.
    match kind {
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
            ErrorClass::Disconnect(Disconnect::Closed)
        }
        _ => ErrorClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(kind: DatabaseErrorKind, msg: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(msg.to_string()))
    }

    #[test]
    fn mysql_table() {
        use Disconnect::*;
        let unknown = DatabaseErrorKind::Unknown;
        let cases: &[(&str, ErrorClass)] = &[
            ("Server has gone away", ErrorClass::Disconnect(GoneAway)),
            ("MySQL server has gone away", ErrorClass::Disconnect(GoneAway)),
            ("Lost connection to server during query", ErrorClass::Disconnect(Lost)),
            ("Lost connection to MySQL server during query", ErrorClass::Disconnect(Lost)),
            (
                "Lost connection to server at 'handshake: reading initial communication packet', system error: 104",
                ErrorClass::Disconnect(Lost),
            ),
            (
                "Lost connection to MySQL server at 'reading authorization packet', system error: 0",
                ErrorClass::Disconnect(Lost),
            ),
            (
                "Commands out of sync; you can't run this command now",
                ErrorClass::Disconnect(Closed),
            ),
            ("Connection was killed", ErrorClass::Disconnect(Killed)),
            ("Server shutdown in progress", ErrorClass::Disconnect(ServerShutdown)),
            (
                "The client was disconnected by the server because of inactivity. See wait_timeout and interactive_timeout for configuring this behavior.",
                ErrorClass::Disconnect(IdleTimeout),
            ),
            (
                "Deadlock found when trying to get lock; try restarting transaction",
                ErrorClass::Conflict,
            ),
            ("Duplicate entry '1' for key 'PRIMARY'", ErrorClass::Other),
            ("Table 'test.nope' doesn't exist", ErrorClass::Other),
        ];
        for (msg, want) in cases {
            assert_eq!(classify(Backend::Mysql, &db(unknown, msg)), *want, "{msg}");
        }
        assert_eq!(
            classify(
                Backend::Mysql,
                &db(DatabaseErrorKind::SerializationFailure, "x")
            ),
            ErrorClass::Conflict
        );
    }

    #[test]
    fn postgres_table() {
        use DatabaseErrorKind as K;
        use Disconnect::*;
        let cases: &[(K, &str, ErrorClass)] = &[
            (
                K::ClosedConnection,
                "terminating connection due to administrator command",
                ErrorClass::Disconnect(Killed),
            ),
            (K::UnableToSendCommand, "no connection to the server\n", ErrorClass::Disconnect(Closed)),
            (
                K::Unknown,
                "server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally",
                ErrorClass::Disconnect(Lost),
            ),
            (K::Unknown, "the database system is shutting down", ErrorClass::Disconnect(ServerShutdown)),
            (K::Unknown, "the database system is starting up", ErrorClass::Disconnect(ServerShutdown)),
            (K::SerializationFailure, "could not serialize access", ErrorClass::Conflict),
            (K::Unknown, "deadlock detected", ErrorClass::Conflict),
            (K::UniqueViolation, "duplicate key value violates unique constraint", ErrorClass::Other),
            (K::Unknown, "relation \"nope\" does not exist", ErrorClass::Other),
        ];
        for (kind, msg, want) in cases {
            assert_eq!(classify(Backend::Postgres, &db(*kind, msg)), *want, "{msg}");
        }
        assert_eq!(
            classify(Backend::Postgres, &DieselError::BrokenTransactionManager),
            ErrorClass::Disconnect(BrokenTransaction)
        );
    }

    #[test]
    fn not_found_is_not_a_disconnect() {
        for d in [Backend::Sqlite, Backend::Mysql, Backend::Postgres] {
            assert_eq!(classify(d, &DieselError::NotFound), ErrorClass::Other);
        }
    }
}
