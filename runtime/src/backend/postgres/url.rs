//! Which connection strings a PostgreSQL pool takes: what libpq reads, a
//! `postgres://` or `postgresql://` URL or `key=value` pairs (an empty
//! string means libpq's defaults and environment). Another backend's URL is
//! refused with a message that says so, instead of libpq's
//! `missing "=" after "mysql://..." in connection info string`.

use super::super::url::{backend_of, foreign, looks_like_sqlite, scheme};
use super::super::{Backend, Target};

const ACCEPTED: &str = "a PostgreSQL pool takes `postgres://user:password@host:port/database` \
     (or `postgresql://`), or libpq's `key=value` pairs (`host=db dbname=app`)";

pub(super) fn target(url: &str) -> Result<Target, String> {
    let scheme = scheme(url).filter(|s| url[s.len()..].starts_with("://"));
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(Target::AS_GIVEN),
        Some(s) => match backend_of(s) {
            Some(other) if other != Backend::Postgres => Err(foreign(other, ACCEPTED)),
            _ => Err(format!("`{s}://` is not a PostgreSQL scheme; {ACCEPTED}")),
        },
        None if url.is_empty() || url.contains('=') => Ok(Target::AS_GIVEN),
        None if looks_like_sqlite(url) => Err(foreign(Backend::Sqlite, ACCEPTED)),
        None => Err(format!(
            "it is neither a URL nor `key=value` pairs; {ACCEPTED}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_key_value_pairs() {
        for ok in [
            "postgres://app@db/app",
            "postgresql://app@h1,h2/app?target_session_attrs=read-write",
            "host=/var/run/postgresql dbname=app",
            "",
        ] {
            assert_eq!(target(ok), Ok(Target::AS_GIVEN), "{ok}");
        }
        let why = target("mysql://app@db/app").unwrap_err();
        assert!(
            why.contains("MariaDB/MySQL URL") && why.contains("Pool<MysqlConnection>"),
            "{why}"
        );
        assert!(target("sqlite://app.db")
            .unwrap_err()
            .contains("SQLite URL"));
        assert!(target("app.db").unwrap_err().contains("SQLite URL"));
        assert!(target("pg://db").unwrap_err().contains("`pg://` is not"));
        assert!(target("db.example.com").unwrap_err().contains("neither"));
    }
}
