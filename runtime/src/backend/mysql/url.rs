//! Which URLs a MariaDB/MySQL pool takes: `mysql://...` only, as diesel's
//! driver. Anything else is refused with a message that names what it looks
//! like (diesel's own says only what the form should be).

use super::super::url::{backend_of, foreign, looks_like_sqlite, scheme};
use super::super::{Backend, Target};

const ACCEPTED: &str = "a MariaDB/MySQL pool takes \
     `mysql://user:password@host:port/database` (also for MariaDB)";

pub(super) fn target(url: &str) -> Result<Target, String> {
    let scheme = scheme(url);
    match scheme.as_deref() {
        Some("mysql") if url[5..].starts_with("://") => Ok(Target::AS_GIVEN),
        Some("mariadb") => Err(format!(
            "diesel's driver speaks to MariaDB with the `mysql://` scheme: write `mysql://` \
             instead of `mariadb://`; {ACCEPTED}"
        )),
        Some(s) => match backend_of(s) {
            Some(other) if other != Backend::Mysql => Err(foreign(other, ACCEPTED)),
            _ => Err(format!("`{s}:` is not a MariaDB/MySQL scheme; {ACCEPTED}")),
        },
        None if looks_like_sqlite(url) => Err(foreign(Backend::Sqlite, ACCEPTED)),
        None => Err(format!("it is not a URL; {ACCEPTED}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mysql_urls() {
        assert_eq!(target("mysql://app:pw@db:3306/app"), Ok(Target::AS_GIVEN));
        assert_eq!(target("MySQL://db/app"), Ok(Target::AS_GIVEN));
        let why = target("postgres://db/app").unwrap_err();
        assert!(
            why.contains("PostgreSQL URL") && why.contains("Pool<PgConnection>"),
            "{why}"
        );
        let why = target("mariadb://app@db/app").unwrap_err();
        assert!(
            why.contains("write `mysql://` instead of `mariadb://`"),
            "{why}"
        );
        assert!(target("/var/lib/app.db")
            .unwrap_err()
            .contains("SQLite URL"));
        assert!(target(":memory:").unwrap_err().contains("SQLite URL"));
        assert!(target("http://db").unwrap_err().contains("`http:` is not"));
        assert!(target("db.example.com").unwrap_err().contains("not a URL"));
        assert!(target("mysql:db").unwrap_err().contains("`mysql:` is not"));
    }
}
