//! PostgreSQL's role and replication positions: read-only and standby from
//! `transaction_read_only` and `pg_is_in_recovery()`, a commit's position as
//! a WAL location, and a standby's progress as its replay location.

/// The role check of a pooled connection. Outside a transaction block
/// `transaction_read_only` is what a new transaction would get: `on` on a
/// standby and on a primary fenced with `default_transaction_read_only`.
pub(crate) const ROLE_SQL: &str = "SELECT pg_is_in_recovery() AS standby, \
     current_setting('transaction_read_only') = 'on' AS read_only";

/// After a COMMIT: the end of the WAL inserted so far, at or past the
/// commit record (even with `synchronous_commit = off`, where the record
/// may not be written yet).
pub(crate) const POSITION_SQL: &str =
    "SELECT CAST(pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS BIGINT) AS lsn";

/// Whether this standby has replayed up to `lsn` (PostgreSQL's text form),
/// and whether it is a standby at all.
pub(crate) fn replayed_sql(lsn: &str) -> String {
    format!(
        "SELECT pg_is_in_recovery() AS standby, \
         COALESCE(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false) AS reached"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_check_names_the_location() {
        assert!(replayed_sql("16/B374D848").contains(">= '16/B374D848'::pg_lsn"));
    }
}
