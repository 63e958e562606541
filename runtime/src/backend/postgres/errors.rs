//! What PostgreSQL errors mean: diesel's error kind first, then the
//! server's (English) message and libpq's texts; and the connect failures
//! that mean "no server there yet".

use diesel::result::DatabaseErrorKind;

use crate::classify::{Disconnect, ErrorClass};

/// tokio-postgres, the client under diesel-async's `AsyncPgConnection`, gives
/// diesel every error without a SQLSTATE as `UnableToSendCommand` (a
/// disconnect by its kind alone): `connection closed` after
/// pg_terminate_backend, a restart, idle_session_timeout,
/// idle_in_transaction_session_timeout, a cut link or a cut after COMMIT;
/// `error communicating with the server: ...` for an I/O error. A server
/// that says why it ends the session first (57P01 during a statement) is
/// matched by the server's text below. Produced with tokio-postgres 0.7 in
/// `tests/async/tests/disconnect_texts.rs`.
///
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
    // 57P01 too: the postmaster died (killed, or the first process of a
    // crash) and a backend woken for its client saw that first. libpq adds
    // "server closed the connection unexpectedly"; tokio-postgres reports
    // this alone, as the error of the statement in flight (seen when
    // `tests/async` `failover_under_load` kills a primary).
    (
        "terminating connection due to unexpected postmaster exit",
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
    // A standby ends a session that holds back its replay (40001, FATAL):
    // worth a retry like a kill. Cancelled statements are conflicts (below).
    (
        "terminating connection due to conflict with recovery",
        Disconnect::Killed,
    ),
];

/// What pgbouncer sends a client before it closes the client's connection
/// (SQLSTATE 08P01, from pgbouncer 1.18's sources). libpq usually reports
/// the close itself ("server closed the connection unexpectedly", seen in
/// `tests/role_texts.rs`), but may show these first.
const POOLER_TEXTS: &[(&str, Disconnect)] = &[
    // The server connection died while the client's transaction used it.
    ("server conn crashed?", Disconnect::Lost),
    // No server connection within query_wait_timeout: the server is down.
    ("query_wait_timeout", Disconnect::ServerShutdown),
    ("server login has been failing", Disconnect::ServerShutdown),
    (
        "pgbouncer cannot connect to server",
        Disconnect::ServerShutdown,
    ),
    ("client_login_timeout", Disconnect::ServerShutdown),
    ("idle transaction timeout", Disconnect::IdleTimeout),
    ("client_idle_timeout", Disconnect::IdleTimeout),
    ("database removed", Disconnect::Closed),
];

pub(super) fn classify(kind: DatabaseErrorKind, message: &str) -> ErrorClass {
    let by_text = POSTGRES_TEXTS
        .iter()
        .chain(POOLER_TEXTS)
        .find(|(t, _)| message.contains(t));
    match kind {
        DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand => {
            ErrorClass::Disconnect(by_text.map_or(Disconnect::Closed, |(_, d)| *d))
        }
        // 25006: a write on a standby, or on a primary fenced or demoted
        // read-only. (Inside a `read_only` function the pool treats it as the
        // body's own error.)
        DatabaseErrorKind::ReadOnlyTransaction => ErrorClass::Disconnect(Disconnect::ReadOnly),
        // 40001, also "canceling statement due to conflict with recovery"
        // on a standby; the FATAL form ends the session.
        DatabaseErrorKind::SerializationFailure => match by_text {
            Some((_, d)) => ErrorClass::Disconnect(*d),
            None => ErrorClass::Conflict,
        },
        _ => match by_text {
            Some((_, d)) => ErrorClass::Disconnect(*d),
            // 40P01 deadlock_detected has no diesel kind of its own
            None if message.contains("deadlock detected") => ErrorClass::Conflict,
            None => ErrorClass::Other,
        },
    }
}

/// Connect failures that mean the server is not (yet) there.
const UNREACHABLE: &[&str] = &[
    "Connection refused",
    // 57P03
    "the database system is starting up",
    "the database system is shutting down",
    "server closed the connection unexpectedly",
    // libpq's target_session_attrs found no server of the wanted role:
    // during a failover one is about to appear.
    "session is read-only",
    "server is in hot standby mode",
    "server is not in hot standby mode",
    // pgbouncer in front of a server that is down or restarting.
    "query_wait_timeout",
    "server login has been failing",
    "pgbouncer cannot connect to server",
    // tokio-postgres (diesel-async keeps only this, not the I/O cause): the
    // connect itself failed, no server spoke
    "error connecting to server",
];

pub(super) fn unreachable(message: &str) -> bool {
    UNREACHABLE.iter().any(|t| message.contains(t))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            (
                K::Unknown,
                "terminating connection due to unexpected postmaster exit",
                ErrorClass::Disconnect(ServerShutdown),
            ),
            (K::SerializationFailure, "could not serialize access", ErrorClass::Conflict),
            (K::Unknown, "deadlock detected", ErrorClass::Conflict),
            (K::UniqueViolation, "duplicate key value violates unique constraint", ErrorClass::Other),
            (
                K::ReadOnlyTransaction,
                "cannot execute INSERT in a read-only transaction",
                ErrorClass::Disconnect(ReadOnly),
            ),
            (
                K::SerializationFailure,
                "canceling statement due to conflict with recovery",
                ErrorClass::Conflict,
            ),
            (
                K::SerializationFailure,
                "terminating connection due to conflict with recovery",
                ErrorClass::Disconnect(Killed),
            ),
            (K::Unknown, "server conn crashed?", ErrorClass::Disconnect(Lost)),
            (K::Unknown, "query_wait_timeout", ErrorClass::Disconnect(ServerShutdown)),
            (K::Unknown, "relation \"nope\" does not exist", ErrorClass::Other),
            // tokio-postgres
            (K::UnableToSendCommand, "connection closed", ErrorClass::Disconnect(Closed)),
            (
                K::UnableToSendCommand,
                "error communicating with the server: Connection reset by peer (os error 104)",
                ErrorClass::Disconnect(Closed),
            ),
            (
                K::Unknown,
                "terminating connection due to idle-in-transaction timeout",
                ErrorClass::Disconnect(IdleTimeout),
            ),
        ];
        for (kind, msg, want) in cases {
            assert_eq!(classify(*kind, msg), *want, "{msg}");
        }
    }

    #[test]
    fn unreachable_is_not_a_refusal() {
        assert!(unreachable(
            "connection to server at \"127.0.0.1\", port 1 failed: Connection refused"
        ));
        assert!(!unreachable(
            "FATAL:  password authentication failed for user \"app\""
        ));
        assert!(unreachable("error connecting to server"));
        assert!(!unreachable("FATAL:  database \"nope\" does not exist"));
        assert!(unreachable(
            "connection to server at \"127.0.0.1\", port 5433 failed: session is read-only"
        ));
        assert!(unreachable(
            "connection to server at \"127.0.0.1\", port 6432 failed: FATAL:  query_wait_timeout"
        ));
    }
}
