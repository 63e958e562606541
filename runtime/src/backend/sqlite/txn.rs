//! BEGIN on SQLite, and the options it cannot honour.

use super::super::{TxnSql, Unsupported};
use crate::options::Options;

#[inline]
pub(super) fn sql(options: &Options, upfront: bool) -> Result<TxnSql, Unsupported> {
    match options.isolation {
        None | Some(crate::Isolation::Serializable) => {}
        Some(_) => {
            return Err(
                "runs every transaction SERIALIZABLE and cannot honour a weaker `isolation`: \
                 use `isolation = serializable` or drop the option",
            )
        }
    }
    if options.timeout.is_some() {
        return Err(
            "has no statement timeout, so `timeout` cannot be honoured: drop it (lock waits \
             are bounded by the pool's `sqlite_busy_timeout`)",
        );
    }
    Ok(if options.read_only {
        TxnSql {
            begin: "BEGIN DEFERRED; PRAGMA query_only = ON".into(),
            after: Some("PRAGMA query_only = OFF"),
        }
    } else if upfront {
        // IMMEDIATE takes the write lock up front, so concurrent writers wait
        // in busy_timeout instead of failing with SQLITE_BUSY on upgrade.
        TxnSql::plain("BEGIN IMMEDIATE")
    } else {
        // A reader pays for no lock it does not need. A function that
        // reads, then writes while another connection writes gets
        // SQLITE_BUSY at its first write: the runner begins it again,
        // IMMEDIATE, and remembers to do so for that function.
        TxnSql::plain("BEGIN")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isolation;

    #[test]
    fn default_begin() {
        assert_eq!(
            sql(&Options::new("f"), true),
            Ok(TxnSql::plain("BEGIN IMMEDIATE"))
        );
        assert_eq!(sql(&Options::new("f"), false), Ok(TxnSql::plain("BEGIN")));
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let weak = Options::new("f").isolation(Isolation::ReadCommitted);
        assert!(sql(&weak, true).unwrap_err().contains("SERIALIZABLE"));
        let timeout = Options::new("f").timeout_ms(10);
        assert!(sql(&timeout, true).unwrap_err().contains("timeout"));
        let ser = Options::new("f")
            .isolation(Isolation::Serializable)
            .read_only();
        let s = sql(&ser, false).unwrap();
        assert_eq!(s.begin, "BEGIN DEFERRED; PRAGMA query_only = ON");
        assert_eq!(s.after, Some("PRAGMA query_only = OFF"));
    }
}
