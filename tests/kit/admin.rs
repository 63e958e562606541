//! Pieces shared by the servers' admin helpers.

use diesel::sql_types::BigInt;
use diesel::QueryableByName;

/// One row of one `BIGINT` column named `v`.
#[derive(QueryableByName)]
pub(crate) struct Scalar {
    #[diesel(sql_type = BigInt)]
    pub v: i64,
}

/// One row of one text column named `v`.
#[cfg(feature = "mysql")]
#[derive(QueryableByName)]
pub(crate) struct TextScalar {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub v: String,
}

/// `sql` without surrounding blanks and trailing `;`, to embed as a
/// sub-query.
pub(crate) fn subquery(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

/// Panics unless `name` is a plain identifier (ASCII letters, digits, `_`,
/// not starting with a digit), so it needs no quoting in SQL or URLs.
pub(crate) fn check_name(name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    assert!(
        ok,
        "database name {name:?}: use ASCII letters, digits and `_` (max 63)"
    );
}
