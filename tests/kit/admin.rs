//! Pieces shared by the servers' admin helpers.

use diesel::sql_types::BigInt;
use diesel::QueryableByName;

use crate::error::KitError;

/// One row of one `BIGINT` column named `v`.
#[derive(QueryableByName)]
pub(crate) struct Scalar {
    #[diesel(sql_type = BigInt)]
    pub v: i64,
}

/// One row of one text column named `v`.
#[derive(QueryableByName)]
pub(crate) struct TextScalar {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub v: String,
}

/// `title`, then the text `sql` returns (one row, one text column `v`) on
/// `conn`; a failure is described, never raised (for a failing test's
/// message).
pub(crate) fn text_report<C>(title: &str, conn: Result<C, KitError>, sql: &str) -> String
where
    C: diesel::connection::LoadConnection,
    diesel::query_builder::SqlQuery: for<'a> diesel::query_dsl::LoadQuery<'a, C, TextScalar>,
{
    let rows = conn.and_then(|mut conn| {
        diesel::RunQueryDsl::get_result::<TextScalar>(diesel::sql_query(sql), &mut conn)
            .map(|r| r.v)
            .map_err(|e| KitError::Sql {
                what: sql.to_string(),
                detail: e.to_string(),
            })
    });
    match rows {
        Ok(rows) => format!("{title}:\n{rows}"),
        Err(e) => format!("{title}: no report ({e})"),
    }
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
