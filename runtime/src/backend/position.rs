//! A point in a server's replication stream: what a replica must have
//! applied to show a commit. One form per server family, each with its text
//! form (the one [`WriteToken`](crate::WriteToken) carries), and the two
//! operations read-your-writes needs: keep the later of two positions, and
//! tell whether one is at or past another.
//!
//! Positions are parsed strictly: the text may come from outside (a cookie)
//! and ends up in SQL, so only digits, hex and separators get through.

use std::fmt;

/// A position in the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// PostgreSQL: a WAL location (LSN), as a byte offset.
    Lsn(u64),
    /// MariaDB: one GTID per replication domain, sorted by domain.
    Gtid(Vec<Gtid>),
    /// MySQL: a GTID set as the server prints it (`uuid:1-42,...`), without
    /// white space.
    GtidSet(String),
}

/// A MariaDB GTID, `domain-server-sequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gtid {
    pub domain: u32,
    pub server: u32,
    pub seq: u64,
}

/// Why a text is not a position.
pub(crate) type BadPosition = &'static str;

impl Position {
    /// Keep the later of `self` and `other` (for MySQL GTID sets, their union).
    pub(crate) fn merge(&mut self, other: &Position) {
        match (&mut *self, other) {
            (Position::Lsn(a), Position::Lsn(b)) => *a = (*a).max(*b),
            (Position::Gtid(a), Position::Gtid(b)) => {
                for g in b {
                    match a.iter_mut().find(|x| x.domain == g.domain) {
                        Some(x) if x.seq < g.seq => *x = *g,
                        Some(_) => {}
                        None => a.push(*g),
                    }
                }
                a.sort_by_key(|g| g.domain);
            }
            (Position::GtidSet(a), Position::GtidSet(b)) => {
                if !a.split(',').any(|part| part == b) {
                    a.push(',');
                    a.push_str(b);
                }
            }
            // Another server family (a token from elsewhere): the newer wins.
            (this, other) => *this = other.clone(),
        }
    }

    /// Whether a replica at `self` shows everything up to `other`. Unknown
    /// for MySQL GTID sets unless they are equal (the server decides).
    pub(crate) fn covers(&self, other: &Position) -> bool {
        match (self, other) {
            (Position::Lsn(a), Position::Lsn(b)) => a >= b,
            // Sequence numbers grow within a domain whichever server wrote
            // them (a new primary continues the old one's).
            (Position::Gtid(a), Position::Gtid(b)) => b
                .iter()
                .all(|g| a.iter().any(|x| x.domain == g.domain && x.seq >= g.seq)),
            (Position::GtidSet(a), Position::GtidSet(b)) => a == b,
            _ => false,
        }
    }

    /// PostgreSQL's spelling of an LSN, `16/B374D848`.
    pub(crate) fn lsn_text(lsn: u64) -> String {
        format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
    }

    /// A MariaDB GTID list, `0-1-42,1-2-7`, as the server prints it.
    pub(crate) fn parse_gtid_list(text: &str) -> Result<Vec<Gtid>, BadPosition> {
        let mut list = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut fields = part.splitn(3, '-');
            let (Some(d), Some(s), Some(n)) = (fields.next(), fields.next(), fields.next()) else {
                return Err("a MariaDB GTID is domain-server-sequence");
            };
            let gtid = Gtid {
                domain: d.parse().map_err(|_| "a GTID domain is a number")?,
                server: s.parse().map_err(|_| "a GTID server id is a number")?,
                seq: n.parse().map_err(|_| "a GTID sequence is a number")?,
            };
            if list.iter().any(|g: &Gtid| g.domain == gtid.domain) {
                return Err("one GTID per domain");
            }
            list.push(gtid);
        }
        list.sort_by_key(|g| g.domain);
        Ok(list)
    }

    /// A MySQL GTID set, `3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7,...`
    /// (white space removed).
    pub(crate) fn parse_gtid_set(text: &str) -> Result<String, BadPosition> {
        let set: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for part in set.split(',') {
            let mut fields = part.split(':');
            let uuid = fields.next().unwrap_or_default();
            let uuid_ok = uuid.len() == 36
                && uuid.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
                && uuid.matches('-').count() == 4;
            // MySQL 8.3 adds tagged GTIDs (uuid:tag:1-5): tags are letters,
            // digits and underscores.
            let intervals_ok = fields.clone().next().is_some()
                && fields.all(|f| {
                    !f.is_empty()
                        && f.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !uuid_ok || !intervals_ok {
                return Err("a MySQL GTID set is uuid:interval[:interval][,...]");
            }
        }
        Ok(set)
    }
}

impl fmt::Display for Position {
    /// `lsn:16/B374D848`, `gtid:0-1-42,1-2-7`, `gtidset:<uuid>:1-42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Lsn(lsn) => write!(f, "lsn:{}", Position::lsn_text(*lsn)),
            Position::Gtid(list) => {
                f.write_str("gtid:")?;
                for (i, g) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{}-{}-{}", g.domain, g.server, g.seq)?;
                }
                Ok(())
            }
            Position::GtidSet(set) => write!(f, "gtidset:{set}"),
        }
    }
}

impl std::str::FromStr for Position {
    type Err = BadPosition;

    fn from_str(text: &str) -> Result<Self, BadPosition> {
        let (kind, value) = text
            .split_once(':')
            .ok_or("expected lsn:..., gtid:... or gtidset:...")?;
        match kind {
            "lsn" => {
                let (hi, lo) = value.split_once('/').ok_or("an LSN is HI/LO in hex")?;
                let hi = u32::from_str_radix(hi, 16).map_err(|_| "an LSN is HI/LO in hex")?;
                let lo = u32::from_str_radix(lo, 16).map_err(|_| "an LSN is HI/LO in hex")?;
                Ok(Position::Lsn(u64::from(hi) << 32 | u64::from(lo)))
            }
            "gtid" => {
                let list = Position::parse_gtid_list(value)?;
                if list.is_empty() {
                    return Err("an empty GTID list");
                }
                Ok(Position::Gtid(list))
            }
            "gtidset" => Ok(Position::GtidSet(Position::parse_gtid_set(value)?)),
            _ => Err("expected lsn:..., gtid:... or gtidset:..."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(text: &str) -> Position {
        Position::Gtid(Position::parse_gtid_list(text).unwrap())
    }

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "lsn:16/B374D848",
            "lsn:0/3000060",
            "gtid:0-1-42,1-2-7",
            "gtidset:3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:7",
        ] {
            let p: Position = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
        }
        assert_eq!(
            "lsn:16/B374D848".parse::<Position>(),
            Ok(Position::Lsn(0x16_B374_D848))
        );
    }

    #[test]
    fn nothing_but_positions_get_through() {
        for bad in [
            "",
            "lsn:1",
            "lsn:zz/1",
            "gtid:",
            "gtid:0-1",
            "gtid:0-1-2,0-3-4",
            "gtid:0-1-2'; DROP TABLE t; --",
            "gtidset:x:1",
            "gtidset:3E11FA47-71CA-11E1-9E33-C80AA9429562",
            "gtidset:3E11FA47-71CA-11E1-9E33-C80AA9429562:1')",
            "wal:1/2",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn merge_keeps_the_later_and_covers_compares() {
        let mut a = Position::Lsn(10);
        a.merge(&Position::Lsn(7));
        assert_eq!(a, Position::Lsn(10));
        assert!(a.covers(&Position::Lsn(10)) && !Position::Lsn(9).covers(&a));

        let mut a = g("0-1-5,2-1-3");
        a.merge(&g("0-1-7,1-4-1"));
        assert_eq!(a, g("0-1-7,1-4-1,2-1-3"));
        assert!(a.covers(&g("0-1-6")));
        assert!(!a.covers(&g("0-1-8")));
        assert!(!a.covers(&g("3-1-1")), "a domain the replica has not seen");
        // After a switchover the same domain continues with another server id.
        assert!(g("0-2-9").covers(&g("0-1-8")));

        let set = "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5";
        let mut s = Position::GtidSet(set.into());
        assert!(s.covers(&Position::GtidSet(set.into())));
        s.merge(&Position::GtidSet(set.into()));
        assert_eq!(s, Position::GtidSet(set.into()));
    }
}
