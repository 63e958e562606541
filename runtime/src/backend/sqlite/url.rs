//! Which names a SQLite pool takes (issue 9).
//!
//! SQLite opens almost any string as a file name, so `mysql://...` given to
//! a SQLite pool used to fail with "Unable to open the database file", and
//! `not a url` created a file of that name. The rule:
//!
//! * accepted: `:memory:` (one in-memory database shared by the pool's
//!   connections), a `file:` URI, `sqlite://` followed by a path (diesel
//!   reads it as `file:`), and a path: a name with a `/` or an extension
//!   (`app.db`, `./app`, `/var/lib/app.db`);
//! * refused: an empty name, another backend's URL (`mysql://`,
//!   `postgres://`, ...), any other `scheme://`, `sqlite:` without `//`, a
//!   bare word with neither `/` nor extension (`not a url`, `app`: write
//!   `./app`), and an in-memory URI that gives each connection a database of
//!   its own (`file::memory:`, `mode=memory` without `cache=shared`, a
//!   `vfs=memdb` name without a leading `/`).
//!
//! In-memory databases exist only while a connection to them is open, so
//! for those the pool keeps one open as long as it lives.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::super::url::{backend_of, foreign, scheme};
use super::super::{Backend, Target};

/// What a SQLite pool takes, for messages.
pub(super) const ACCEPTED: &str = "a SQLite pool takes a file path (`app.db`, `./app`, \
     `/var/lib/app.db`), a `file:` URI, `sqlite://` followed by a path, or `:memory:`";

/// How a SQLite pool opens `url`, or why it refuses it.
pub(super) fn target(url: &str) -> Result<Target, String> {
    if url.is_empty() {
        return Err(format!(
            "it is empty, which SQLite opens as a private temporary database for each \
             connection; {ACCEPTED}"
        ));
    }
    if url == ":memory:" {
        return Ok(Target {
            url: Some(pool_memory_url()),
            keep_open: true,
        });
    }
    match scheme(url).as_deref() {
        Some("file") => uri(url, &url["file:".len()..]),
        Some("sqlite") => match url.strip_prefix("sqlite://") {
            Some(rest) => uri(url, rest),
            None => Err(format!(
                "diesel reads `sqlite://` followed by a path (it becomes a `file:` URI), not \
                 `sqlite:` alone; {ACCEPTED}"
            )),
        },
        Some(s) => match backend_of(s) {
            Some(Backend::Sqlite) => Err(format!(
                "diesel does not read `{s}:` (it would open a file of that name); write \
                 `sqlite://` followed by the path, or the path alone. {ACCEPTED}"
            )),
            Some(other) => Err(foreign(other, ACCEPTED)),
            None if url[s.len()..].starts_with("://") => {
                Err(format!("`{s}://` is not a SQLite scheme; {ACCEPTED}"))
            }
            None => path(url),
        },
        None => path(url),
    }
}

/// A plain name: a path if it has a `/` or an extension.
fn path(url: &str) -> Result<Target, String> {
    if url.contains('/') || std::path::Path::new(url).extension().is_some() {
        return Ok(Target::AS_GIVEN);
    }
    Err(format!(
        "it is neither a path nor a URL (no `/` and no extension); to open a file of that \
         name in the current directory, write `./{url}`. {ACCEPTED}"
    ))
}

/// The parts of a `file:` URI SQLite looks at.
struct Uri<'a> {
    path: Cow<'a, str>,
    params: Vec<(&'a str, &'a str)>,
}

impl Uri<'_> {
    fn param(&self, key: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// `Some(shared)` for an in-memory database.
    fn memory(&self) -> Option<bool> {
        if self.param("vfs") == Some("memdb") {
            // memdb shares a database among connections when its name starts with `/`.
            return Some(self.path.starts_with('/'));
        }
        let memory = self.path == ":memory:" || self.param("mode") == Some("memory");
        memory.then(|| self.param("cache") == Some("shared"))
    }
}

/// Split what follows `file:` (or `sqlite://`) as SQLite does
/// (<https://sqlite.org/uri.html>).
fn parse(rest: &str) -> Result<Uri<'_>, String> {
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = match path.strip_prefix("//") {
        Some(after) => {
            let (authority, path) = after.split_at(after.find('/').unwrap_or(after.len()));
            if !authority.is_empty() && authority != "localhost" {
                return Err(
                    "SQLite takes only an empty authority or `localhost` in a `file:` \
                     URI (write `file:///absolute/path` or `file:relative/path`)"
                        .to_owned(),
                );
            }
            path
        }
        None => path,
    };
    let params = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    Ok(Uri {
        path: percent_decode(path),
        params,
    })
}

fn uri(url: &str, rest: &str) -> Result<Target, String> {
    let uri = parse(rest).map_err(|why| format!("{why}; {ACCEPTED}"))?;
    match uri.memory() {
        Some(true) => Ok(Target {
            url: None,
            keep_open: true,
        }),
        Some(false) => Err(format!(
            "`{url}` gives each connection an empty in-memory database of its own, lost when \
             the pool closes that connection; write `:memory:` for an in-memory database \
             shared by the pool's connections"
        )),
        None if uri.path.is_empty() => Err(format!("the URI names no file; {ACCEPTED}")),
        None => Ok(Target::AS_GIVEN),
    }
}

/// The file a connection to `url` opens, when it is one (not in memory).
pub(super) fn file_path(url: &str) -> Option<PathBuf> {
    let rest = match scheme(url).as_deref() {
        Some("file") => &url["file:".len()..],
        Some("sqlite") => url.strip_prefix("sqlite://")?,
        _ if url.is_empty() || url == ":memory:" => return None,
        _ => return Some(PathBuf::from(url)),
    };
    let uri = parse(rest).ok()?;
    match uri.memory() {
        Some(_) => None,
        None => Some(PathBuf::from(uri.path.into_owned())),
    }
}

/// A `memdb` database of the pool's own: SQLite shares a `memdb` database
/// whose name starts with `/` among the connections of the process that
/// open that name.
fn pool_memory_url() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "file:/db_txn-memory-{}-{}?vfs=memdb",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    )
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        });
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(url: &str) -> Target {
        target(url).unwrap_or_else(|e| panic!("{url} refused: {e}"))
    }

    fn refused(url: &str) -> String {
        match target(url) {
            Ok(t) => panic!("{url} accepted: {t:?}"),
            Err(why) => why,
        }
    }

    #[test]
    fn paths_and_uris_are_taken_as_given() {
        for url in [
            "app.db",
            "./app",
            "/var/lib/app.db",
            "data/app",
            "my data.sqlite3",
            "file:app.db",
            "file:///var/lib/app.db?mode=ro",
            "file://localhost/var/lib/app.db",
            "sqlite://app.db",
            "sqlite:///var/lib/app.db",
            "data:2024.db",
        ] {
            assert_eq!(accepted(url), Target::AS_GIVEN, "{url}");
        }
    }

    #[test]
    fn memory_is_one_database_per_pool_kept_open() {
        let a = accepted(":memory:");
        let b = accepted(":memory:");
        assert!(a.keep_open);
        let (a, b) = (a.url.unwrap(), b.url.unwrap());
        assert!(
            a.starts_with("file:/db_txn-memory-") && a.ends_with("?vfs=memdb"),
            "{a}"
        );
        assert_ne!(a, b, "each pool has a database of its own");
        for shared in [
            "file::memory:?cache=shared",
            "file:x?mode=memory&cache=shared",
            "file:/x?vfs=memdb",
        ] {
            assert_eq!(
                accepted(shared),
                Target {
                    url: None,
                    keep_open: true
                },
                "{shared}"
            );
        }
    }

    #[test]
    fn other_backends_say_which_pool_to_use() {
        let why = refused("mysql://app:secret@db/app");
        assert!(why.contains("MariaDB/MySQL URL"), "{why}");
        assert!(why.contains("Pool<MysqlConnection>"), "{why}");
        assert!(why.contains(":memory:"), "says what is accepted: {why}");
        for url in [
            "postgres://db/app",
            "postgresql://db/app",
            "mariadb://db/app",
        ] {
            assert!(refused(url).contains("it is a"), "{url}");
        }
        assert!(refused("http://example.com/app.db").contains("`http://` is not a SQLite"));
    }

    #[test]
    fn bare_words_and_private_memory_are_refused() {
        let why = refused("not a url");
        assert!(why.contains("write `./not a url`"), "{why}");
        assert!(refused("app").contains("`./app`"));
        assert!(refused("").contains("empty"));
        assert!(refused("sqlite:app.db").contains("`sqlite://`"));
        assert!(refused("sqlite3:app.db").contains("`sqlite3:`"));
        assert!(refused("file://db.example/app.db").contains("authority"));
        assert!(refused("file:").contains("names no file"));
        for private in ["file::memory:", "file:x?mode=memory", "file:x?vfs=memdb"] {
            assert!(refused(private).contains("of its own"), "{private}");
        }
    }

    #[test]
    fn the_file_behind_a_url() {
        let p = |u: &str| file_path(u).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(p("/a/b.db").as_deref(), Some("/a/b.db"));
        assert_eq!(
            p("file:///a/my%20b.db?mode=rwc").as_deref(),
            Some("/a/my b.db")
        );
        assert_eq!(p("sqlite://rel.db").as_deref(), Some("rel.db"));
        assert_eq!(p(":memory:"), None);
        assert_eq!(p("file:/x?vfs=memdb"), None);
    }
}
