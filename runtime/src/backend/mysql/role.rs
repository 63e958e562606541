//! MariaDB's and MySQL's role and replication positions: `read_only` is the
//! role (a replica runs with it on, a demoted primary gets it), a commit's
//! position is a GTID (MariaDB) or GTID set (MySQL), and the replica waits
//! for it itself (`MASTER_GTID_WAIT`, `WAIT_FOR_EXECUTED_GTID_SET`).

use std::time::Duration;

use super::super::{Flavor, Position, PositionOf};

/// The role check of a pooled connection. As text: MariaDB 11 made
/// `read_only` an enumeration (`OFF`, `ON`, `NO_LOCK`, ...), older servers
/// and MySQL print 0 or 1. `super_read_only` turns `read_only` on with it.
pub(crate) const ROLE_SQL: &str = "SELECT CAST(@@GLOBAL.read_only AS CHAR) AS read_only";

/// Whether a `read_only` value (as [`ROLE_SQL`] reads it) means read-only.
pub(crate) fn is_read_only(value: &str) -> bool {
    !(value == "0" || value.eq_ignore_ascii_case("OFF"))
}

/// The position to read after a COMMIT, or of the whole server.
pub(crate) fn position_sql(flavor: Flavor, of: PositionOf) -> &'static str {
    match (flavor, of) {
        // This session's last GTID: exactly the commit, in its domain only.
        (Flavor::MariaDb, PositionOf::LastCommit) => "SELECT @@SESSION.last_gtid AS gtid",
        (Flavor::MariaDb, PositionOf::Server) => "SELECT @@GLOBAL.gtid_binlog_pos AS gtid",
        // MySQL: every transaction the server executed (empty with GTIDs off).
        _ => "SELECT @@GLOBAL.gtid_executed AS gtid",
    }
}

/// Wait up to `limit` on the replica: MariaDB's `MASTER_GTID_WAIT` gives
/// 0 (reached) or -1 (timed out); MySQL's `WAIT_FOR_EXECUTED_GTID_SET` 0 or
/// 1. `position` is a GTID list or set already checked by its parser.
pub(crate) fn wait_sql(flavor: Flavor, position: &str, limit: Duration) -> String {
    let secs = limit.as_secs_f64().max(0.001);
    match flavor {
        Flavor::Mysql => format!(
            "SELECT CAST(WAIT_FOR_EXECUTED_GTID_SET('{position}', {secs:.3}) AS SIGNED) AS r"
        ),
        _ => format!("SELECT CAST(MASTER_GTID_WAIT('{position}', {secs:.3}) AS SIGNED) AS r"),
    }
}

/// The text a wait names for `position`: a GTID list or set without its
/// `gtid:` / `gtidset:` prefix; `None` for a position of another server
/// family (it cannot be shown here).
pub(crate) fn wait_target(position: &Position) -> Option<String> {
    match position {
        Position::Gtid(_) | Position::GtidSet(_) => {
            let text = position.to_string();
            Some(text.split_once(':').map_or("", |(_, v)| v).to_owned())
        }
        Position::Lsn(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_in_every_spelling() {
        for on in ["1", "ON", "NO_LOCK", "NO_LOCK_NO_ADMIN"] {
            assert!(is_read_only(on), "{on}");
        }
        for off in ["0", "OFF", "off"] {
            assert!(!is_read_only(off), "{off}");
        }
    }

    #[test]
    fn a_wait_names_the_gtids_alone() {
        let p: Position = "gtid:0-1-42,1-2-7".parse().unwrap();
        assert_eq!(wait_target(&p).as_deref(), Some("0-1-42,1-2-7"));
        assert_eq!(wait_target(&Position::Lsn(7)), None);
    }

    #[test]
    fn waits_in_seconds() {
        let ms = Duration::from_millis;
        assert_eq!(
            wait_sql(Flavor::MariaDb, "0-1-42", ms(250)),
            "SELECT CAST(MASTER_GTID_WAIT('0-1-42', 0.250) AS SIGNED) AS r"
        );
        assert!(wait_sql(Flavor::Mysql, "u:1-3", ms(1500))
            .contains("WAIT_FOR_EXECUTED_GTID_SET('u:1-3', 1.500)"));
    }
}
