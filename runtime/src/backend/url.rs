//! What every backend's URL rule needs: the scheme of a URL, and which
//! backend a scheme belongs to, so that a pool given another backend's URL
//! says so instead of passing it to a driver that misreads it (issue 9).

use super::Backend;

/// The scheme of `url`, lowercased, when it starts with one followed by `:`
/// (RFC 3986: a letter, then letters, digits, `+`, `-` or `.`). One letter
/// is not a scheme (`c:\data.db`).
pub(crate) fn scheme(url: &str) -> Option<String> {
    let (head, _) = url.split_once(':')?;
    let mut chars = head.chars();
    let first = chars.next()?;
    let valid = first.is_ascii_alphabetic()
        && head.len() > 1
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| head.to_ascii_lowercase())
}

/// The backend whose URLs use `scheme`, among the database schemes people
/// write (including ones diesel does not take, such as `mariadb`).
pub(crate) fn backend_of(scheme: &str) -> Option<Backend> {
    match scheme {
        "mysql" | "mariadb" | "mysqlx" => Some(Backend::Mysql),
        "postgres" | "postgresql" | "pg" | "pgsql" => Some(Backend::Postgres),
        "sqlite" | "sqlite3" | "file" => Some(Backend::Sqlite),
        _ => None,
    }
}

/// The diesel connection type of `backend`, for "use a `Pool<...>`" hints.
pub(crate) fn connection_type(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SqliteConnection",
        Backend::Mysql => "MysqlConnection",
        Backend::Postgres => "PgConnection",
    }
}

/// The reason given for a URL that belongs to `other`, in a pool for
/// another backend.
pub(crate) fn foreign(other: Backend, accepted: &str) -> String {
    format!(
        "it is a {other} URL; {accepted}. For {other}, build a `Pool<{}>`",
        connection_type(other)
    )
}

/// Whether `url` looks like a SQLite database rather than a server: a
/// path, `:memory:` or a SQLite URI.
pub(crate) fn looks_like_sqlite(url: &str) -> bool {
    url == ":memory:"
        || url.starts_with(['/', '.'])
        || [".db", ".sqlite", ".sqlite3"]
            .iter()
            .any(|ext| url.to_ascii_lowercase().ends_with(ext))
        || scheme(url).and_then(|s| backend_of(&s)) == Some(Backend::Sqlite)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("mysql://a@b/c").as_deref(), Some("mysql"));
        assert_eq!(scheme("PostgreSQL://x").as_deref(), Some("postgresql"));
        assert_eq!(scheme("file:app.db").as_deref(), Some("file"));
        assert_eq!(scheme("c:\\data.db"), None);
        assert_eq!(scheme(":memory:"), None);
        assert_eq!(scheme("not a url"), None);
        assert_eq!(scheme("./a:b.db"), None);
    }

    #[test]
    fn sqlite_look() {
        for url in [
            ":memory:",
            "/var/a",
            "./a",
            "app.db",
            "x.SQLITE3",
            "file:a",
            "sqlite://a",
        ] {
            assert!(looks_like_sqlite(url), "{url}");
        }
        for url in ["mysql://a", "host=db dbname=app", "app"] {
            assert!(!looks_like_sqlite(url), "{url}");
        }
    }
}
