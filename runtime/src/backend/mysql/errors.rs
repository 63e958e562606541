//! What MariaDB/MySQL errors mean: the texts of the client libraries
//! (libmariadb, libmysqlclient) and of the server, and the connect failures
//! that mean "no server there yet".
//!
//! diesel keeps only the message of a MySQL error and maps none of the
//! client's disconnect codes to `ClosedConnection`, so these tables match
//! texts.

use diesel::result::DatabaseErrorKind;

use crate::classify::{Disconnect, ErrorClass};

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
    // 1290 ER_OPTION_PREVENTS_STATEMENT, for the read-only options only (the
    // same code names other options, such as --secure-file-priv): "The
    // MariaDB server is running with the --read-only option so it cannot
    // execute this statement" (seen in tests/role_texts.rs); MySQL says
    // "MySQL server" and has --super-read-only too. A demoted primary, or a
    // failover that moved the primary: the write goes elsewhere.
    ("running with the --read-only option", Disconnect::ReadOnly),
    (
        "running with the --super-read-only option",
        Disconnect::ReadOnly,
    ),
    // 1836 ER_READ_ONLY_MODE
    ("Running in read-only mode", Disconnect::ReadOnly),
];

/// The texts of mysql_async, the client under diesel-async's
/// `AsyncMysqlConnection`, which reports every lost link as an I/O error
/// whatever the server did. Produced with mysql_async 0.36 and MariaDB 10.11
/// in `tests/async/tests/disconnect_texts.rs` (KILL idle, mid-transaction and
/// during a query, `wait_timeout`, a restart, a shutdown during a query, a
/// cut link, a cut after COMMIT): the first statement on the dead link gets
/// `Input/output error: Input/output error: Broken pipe (os error 32)` (or
/// `... connection closed`, `... Connection reset by peer (os error 104)`),
/// every later one `... Driver error: `Connection to the server is closed.'`;
/// after a statement future was dropped mid-flight or a freeze, the replies
/// are out of step: `... can't parse: buf doesn't have enough data`.
const MYSQL_ASYNC_TEXTS: &[(&str, Disconnect)] = &[
    // DriverError::ConnectionClosed
    ("Connection to the server is closed.", Disconnect::Closed),
];

/// mysql_async's `Error::Io` display starts with this: a failure of the link
/// (or of the protocol on it), never the server's verdict on a statement.
/// Matched as a prefix: a server message can quote an errno text (`Errcode:
/// 5 "Input/output error"`) but never starts with it.
const MYSQL_ASYNC_IO_PREFIX: &str = "Input/output error: ";

const MYSQL_CONFLICTS: &[&str] = &[
    // 1213 ER_LOCK_DEADLOCK (diesel maps it to SerializationFailure for prepared statements)
    "Deadlock found when trying to get lock",
];

pub(super) fn classify(kind: DatabaseErrorKind, message: &str) -> ErrorClass {
    if let DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand = kind {
        return ErrorClass::Disconnect(Disconnect::Closed);
    }
    if let Some((_, d)) = MYSQL_TEXTS.iter().find(|(t, _)| message.contains(t)) {
        return ErrorClass::Disconnect(*d);
    }
    if let Some((_, d)) = MYSQL_ASYNC_TEXTS.iter().find(|(t, _)| message.contains(t)) {
        return ErrorClass::Disconnect(*d);
    }
    if message.starts_with(MYSQL_ASYNC_IO_PREFIX) {
        return ErrorClass::Disconnect(Disconnect::Lost);
    }
    if kind == DatabaseErrorKind::SerializationFailure
        || MYSQL_CONFLICTS.iter().any(|t| message.contains(t))
    {
        return ErrorClass::Conflict;
    }
    ErrorClass::Other
}

/// Connect failures that mean the server is not (yet) there.
const UNREACHABLE: &[&str] = &[
    // 2002/2003 CR_CONNECTION_ERROR / CR_CONN_HOST_ERROR
    "Can't connect",
    // 2013 during the handshake: the port is open but the server went away
    "Lost connection",
    // mysql_async: "Input/output error: Connection refused (os error 111)"
    "Connection refused",
];

pub(super) fn unreachable(message: &str) -> bool {
    UNREACHABLE.iter().any(|t| message.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (
                "The MariaDB server is running with the --read-only option so it cannot execute this statement",
                ErrorClass::Disconnect(ReadOnly),
            ),
            (
                "The MySQL server is running with the --super-read-only option so it cannot execute this statement",
                ErrorClass::Disconnect(ReadOnly),
            ),
            ("Running in read-only mode", ErrorClass::Disconnect(ReadOnly)),
            (
                "The MariaDB server is running with the --secure-file-priv option so it cannot execute this statement",
                ErrorClass::Other,
            ),
            // 1792: the body's own write inside START TRANSACTION READ ONLY.
            ("Cannot execute statement in a READ ONLY transaction", ErrorClass::Other),
            ("Duplicate entry '1' for key 'PRIMARY'", ErrorClass::Other),
            ("Table 'test.nope' doesn't exist", ErrorClass::Other),
            // mysql_async
            (
                "Input/output error: Input/output error: Broken pipe (os error 32)",
                ErrorClass::Disconnect(Lost),
            ),
            (
                "Input/output error: Input/output error: Driver error: `Connection to the server is closed.'",
                ErrorClass::Disconnect(Closed),
            ),
            (
                "Input/output error: Input/output error: can't parse: buf doesn't have enough data",
                ErrorClass::Disconnect(Lost),
            ),
            (
                "Error writing file '/tmp/x' (Errcode: 5 \"Input/output error\")",
                ErrorClass::Other,
            ),
        ];
        for (msg, want) in cases {
            assert_eq!(classify(unknown, msg), *want, "{msg}");
        }
        assert_eq!(
            classify(DatabaseErrorKind::SerializationFailure, "x"),
            ErrorClass::Conflict
        );
    }

    #[test]
    fn unreachable_is_not_a_refusal() {
        assert!(unreachable("Can't connect to server on '127.0.0.1' (111)"));
        assert!(unreachable(
            "Input/output error: Connection refused (os error 111)"
        ));
        assert!(!unreachable(
            "Access denied for user 'app'@'localhost' (using password: YES)"
        ));
        assert!(!unreachable("Unknown database 'nope'"));
    }
}
