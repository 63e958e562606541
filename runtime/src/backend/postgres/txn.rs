//! BEGIN on PostgreSQL, with the function's options. Everything is
//! transaction-scoped (`SET LOCAL`), so nothing needs undoing afterwards.

use super::super::TxnSql;
use crate::options::Options;

#[inline]
pub(super) fn sql(options: &Options) -> TxnSql {
    if options.timeout.is_none() && options.isolation.is_none() {
        return TxnSql::plain(if options.read_only {
            "BEGIN READ ONLY"
        } else {
            "BEGIN"
        });
    }
    with_options(options)
}

/// BEGIN with an isolation level or a timeout: built per call, out of the
/// common path.
#[inline(never)]
fn with_options(options: &Options) -> TxnSql {
    let mut begin = String::from("BEGIN");
    if let Some(level) = options.isolation {
        begin += " ISOLATION LEVEL ";
        begin += level.sql();
    }
    if options.read_only {
        begin += " READ ONLY";
    }
    if let Some(t) = options.timeout {
        // LOCAL: reverts by itself at COMMIT/ROLLBACK.
        begin += &format!("; SET LOCAL statement_timeout = {}", t.as_millis());
    }
    TxnSql {
        begin: begin.into(),
        after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isolation;

    #[test]
    fn default_begin() {
        assert_eq!(sql(&Options::new("f")), TxnSql::plain("BEGIN"));
        assert_eq!(
            sql(&Options::new("f").read_only()),
            TxnSql::plain("BEGIN READ ONLY")
        );
    }

    #[test]
    fn all_options() {
        let o = Options::new("f")
            .isolation(Isolation::Serializable)
            .read_only()
            .timeout_ms(1500);
        let s = sql(&o);
        assert_eq!(
            s.begin,
            "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY; SET LOCAL statement_timeout = 1500"
        );
        assert_eq!(s.after, None);
    }
}
