//! BEGIN on MariaDB/MySQL, with the function's options.

use super::super::{Flavor, ServerInfo, TxnSql};
use crate::options::Options;

#[inline]
pub(super) fn sql(server: &ServerInfo, options: &Options) -> TxnSql {
    if options.timeout.is_none() && options.isolation.is_none() {
        // The common case, without an allocation per call.
        return TxnSql::plain(if options.read_only {
            "START TRANSACTION READ ONLY"
        } else {
            "START TRANSACTION"
        });
    }
    with_options(server, options)
}

/// BEGIN with an isolation level or a timeout: built per call, out of the
/// common path.
#[inline(never)]
fn with_options(server: &ServerInfo, options: &Options) -> TxnSql {
    let mut begin = String::new();
    let mut after = None;
    if let Some(t) = options.timeout {
        if server.flavor == Flavor::Mysql {
            // MySQL bounds only SELECT statements, in milliseconds.
            begin += &format!("SET SESSION max_execution_time = {}; ", t.as_millis());
            after = Some("SET SESSION max_execution_time = DEFAULT");
        } else {
            begin += &format!("SET SESSION max_statement_time = {:.3}; ", t.as_secs_f64());
            after = Some("SET SESSION max_statement_time = DEFAULT");
        }
    }
    if let Some(level) = options.isolation {
        begin += &format!("SET TRANSACTION ISOLATION LEVEL {}; ", level.sql());
    }
    begin += "START TRANSACTION";
    if options.read_only {
        begin += " READ ONLY";
    }
    TxnSql {
        begin: begin.into(),
        after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Isolation;

    fn server(flavor: Flavor) -> ServerInfo {
        ServerInfo {
            flavor,
            ..ServerInfo::default()
        }
    }

    #[test]
    fn default_begin() {
        let s = sql(&server(Flavor::MariaDb), &Options::new("f"));
        assert_eq!(s, TxnSql::plain("START TRANSACTION"));
    }

    #[test]
    fn all_options_on_mariadb_and_mysql() {
        let o = Options::new("f")
            .isolation(Isolation::RepeatableRead)
            .read_only()
            .timeout_ms(1500);
        let s = sql(&server(Flavor::MariaDb), &o);
        assert_eq!(
            s.begin,
            "SET SESSION max_statement_time = 1.500; SET TRANSACTION ISOLATION LEVEL \
             REPEATABLE READ; START TRANSACTION READ ONLY"
        );
        assert_eq!(s.after, Some("SET SESSION max_statement_time = DEFAULT"));
        let s = sql(&server(Flavor::Mysql), &o);
        assert!(
            s.begin
                .starts_with("SET SESSION max_execution_time = 1500; "),
            "{}",
            s.begin
        );
        assert_eq!(s.after, Some("SET SESSION max_execution_time = DEFAULT"));
    }
}
