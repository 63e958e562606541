//! A fresh database for each test, removed afterwards: a temporary file for
//! SQLite; on MariaDB/MySQL and PostgreSQL a uniquely named database created
//! on a server (`DATABASE_URL`) and dropped at the end.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::{Backend, Pool, PoolBuilder, TxnConnection};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Setup<C> = Box<dyn FnOnce(&mut C) -> Result<(), BoxError>>;
type Configure<C> = Box<dyn FnOnce(PoolBuilder<C>) -> PoolBuilder<C>>;

/// A database of its own for one test, with a pool on it; removed when
/// dropped (as users of `#[sqlx::test]` expect).
///
/// * SQLite: a new file in the system's temporary directory, deleted (with
///   its `-wal` and `-shm` files) at the end.
/// * MariaDB/MySQL and PostgreSQL: a database with a unique name
///   (`db_txn_test_<pid>_<n>_<time>`) created on the server that
///   `DATABASE_URL` (or [`server_url`](TestDatabaseBuilder::server_url))
///   names, with `CREATE DATABASE` over a connection to that URL; the pool
///   connects to the new database with the same user, host and parameters.
///   At the end the pool is closed and the database dropped (PostgreSQL:
///   `WITH (FORCE)`, which also ends connections of clones of the pool that
///   the test kept). The user needs the right to create databases.
///
/// The [`setup`](TestDatabaseBuilder::setup) closure runs once on the new,
/// empty database before the pool is handed out: run your migrations there.
///
/// ```
/// use db_txn::db_txn;
/// use db_txn::testing::{install_for_thread, TestDatabase};
/// use diesel::connection::SimpleConnection;
/// use diesel::prelude::*;
/// use diesel::SqliteConnection;
///
/// diesel::table! { users (id) { id -> Integer, name -> Text } }
///
/// #[db_txn]
/// /// Adds a user; returns how many there are now.
/// fn add_user(conn: &mut SqliteConnection, name: &str) -> Result<i64, db_txn::Error> {
///     diesel::insert_into(users::table).values(users::name.eq(name)).execute(conn)?;
///     Ok(users::table.count().get_result(conn)?)
/// }
///
/// // In a `#[test]`: a database of its own, with the schema, whatever other
/// // tests run in parallel.
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let db = TestDatabase::<SqliteConnection>::builder()
///     .setup(|conn| {
///         // Or: conn.run_pending_migrations(MIGRATIONS).map(drop)
///         conn.batch_execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
///     })
///     .create()?;
/// let _pool = install_for_thread(db.pool().clone());
/// assert_eq!(add_user("alice")?, 1);
/// # Ok(()) }
/// ```
///
/// On a server (here from `DATABASE_URL`, e.g.
/// `postgres://app:secret@localhost/postgres`):
///
/// ```no_run
/// # #[cfg(feature = "postgres")] {
/// use diesel::connection::SimpleConnection;
/// use diesel::PgConnection;
///
/// let db = db_txn::testing::TestDatabase::<PgConnection>::builder()
///     .setup(|conn| conn.batch_execute("CREATE TABLE users (id SERIAL PRIMARY KEY, name TEXT)"))
///     .pool(|pool| pool.max_size(2))
///     .create()
///     .unwrap();
/// println!("testing on {}", db.name());
/// # }
/// ```
pub struct TestDatabase<C: TxnConnection> {
    pool: Option<Pool<C>>,
    url: String,
    name: String,
    /// Taken when done.
    cleanup: Option<Cleanup>,
}

enum Cleanup {
    /// SQLite: the database file.
    File(PathBuf),
    /// A server: drop `name` over a connection to `admin_url`.
    Drop { admin_url: String },
}

/// How to make a [`TestDatabase`].
pub struct TestDatabaseBuilder<C: TxnConnection> {
    server_url: Option<String>,
    setup: Option<Setup<C>>,
    configure: Option<Configure<C>>,
}

impl<C: TxnConnection> fmt::Debug for TestDatabaseBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabaseBuilder")
            .field("connection", &std::any::type_name::<C>())
            .field(
                "server_url",
                &self.server_url.as_deref().map(crate::pool::redact_url),
            )
            .field("setup", &self.setup.is_some())
            .finish()
    }
}

impl<C: TxnConnection> TestDatabase<C> {
    /// A fresh, empty database with a default pool: a temporary file for
    /// SQLite, a new database on the server of `DATABASE_URL` otherwise.
    pub fn new() -> Result<Self, TestDatabaseError> {
        Self::builder().create()
    }

    /// Choose the server, the set-up (migrations) and the pool's settings.
    pub fn builder() -> TestDatabaseBuilder<C> {
        TestDatabaseBuilder {
            server_url: None,
            setup: None,
            configure: None,
        }
    }

    /// The pool on the test's database (clone it to install it).
    pub fn pool(&self) -> &Pool<C> {
        self.pool
            .as_ref()
            .expect("the pool is taken only when the database is dropped")
    }

    /// The URL of the test's database (SQLite: the file's path).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (SQLite: the file's path).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Close the pool and remove the database now, reporting a failure
    /// (dropping does the same and logs a failure at WARN).
    pub fn remove(mut self) -> Result<(), TestDatabaseError> {
        self.cleanup()
    }

    fn cleanup(&mut self) -> Result<(), TestDatabaseError> {
        // Close this handle's connections first; clones elsewhere keep theirs.
        drop(self.pool.take());
        match self.cleanup.take() {
            None => Ok(()),
            Some(Cleanup::File(path)) => {
                for suffix in ["", "-wal", "-shm", "-journal"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    match std::fs::remove_file(&file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(source) => {
                            return Err(TestDatabaseError::TempFile {
                                path: PathBuf::from(file),
                                source,
                            })
                        }
                    }
                }
                Ok(())
            }
            Some(Cleanup::Drop { admin_url }) => {
                let sql = match C::BACKEND {
                    Backend::Postgres => {
                        format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
                    }
                    _ => format!("DROP DATABASE IF EXISTS {}", self.name),
                };
                admin::<C>(&admin_url, &sql)
            }
        }
    }
}

impl<C: TxnConnection> Drop for TestDatabase<C> {
    fn drop(&mut self) {
        if let Err(e) = self.cleanup() {
            tracing::warn!(target: "db_txn", database = %self.name, error = %e, "test database not removed");
        }
    }
}

impl<C: TxnConnection> fmt::Debug for TestDatabase<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDatabase")
            .field("backend", &C::BACKEND)
            .field("url", &crate::pool::redact_url(&self.url))
            .finish()
    }
}

impl<C: TxnConnection> TestDatabaseBuilder<C> {
    /// The server to create the database on, instead of `DATABASE_URL`: a
    /// URL (`mysql://user:pass@host:port/db`, `postgres://...`) whose user
    /// may create databases; the database it names is where
    /// `CREATE DATABASE` is sent from (PostgreSQL: `postgres` is a good
    /// choice). Ignored for SQLite.
    pub fn server_url(mut self, url: impl Into<String>) -> Self {
        self.server_url = Some(url.into());
        self
    }

    /// Run `setup` once on the new database before the pool is handed out:
    /// migrations, fixtures. With diesel_migrations:
    /// `.setup(|conn| conn.run_pending_migrations(MIGRATIONS).map(drop))`.
    pub fn setup<E>(mut self, setup: impl FnOnce(&mut C) -> Result<(), E> + 'static) -> Self
    where
        E: Into<BoxError>,
    {
        self.setup = Some(Box::new(move |conn| setup(conn).map_err(Into::into)));
        self
    }

    /// Adjust the pool's settings: `.pool(|b| b.max_size(2))`.
    pub fn pool(
        mut self,
        configure: impl FnOnce(PoolBuilder<C>) -> PoolBuilder<C> + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Create the database, build its pool and run the set-up.
    pub fn create(self) -> Result<TestDatabase<C>, TestDatabaseError> {
        let name = unique_name();
        let (url, cleanup) = match C::BACKEND {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                let url = path.to_str().map(str::to_owned).ok_or_else(|| {
                    TestDatabaseError::TempFile {
                        path: path.clone(),
                        source: std::io::Error::other("the temporary directory is not UTF-8"),
                    }
                })?;
                (url, Cleanup::File(path))
            }
            Backend::Mysql | Backend::Postgres => {
                let server = match self.server_url {
                    Some(url) => url,
                    None => std::env::var("DATABASE_URL").map_err(|_| {
                        TestDatabaseError::NoServerUrl {
                            backend: C::BACKEND,
                        }
                    })?,
                };
                let url = with_database(&server, &name)?;
                create_database::<C>(&server, &name)?;
                (url, Cleanup::Drop { admin_url: server })
            }
        };
        // From here on, dropping `db` removes the database.
        let mut db = TestDatabase {
            pool: None,
            url,
            name: match &cleanup {
                Cleanup::File(path) => path.display().to_string(),
                Cleanup::Drop { .. } => name,
            },
            cleanup: Some(cleanup),
        };
        let mut builder = Pool::<C>::builder(db.url.clone());
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let pool = builder.build().map_err(TestDatabaseError::Pool)?;
        if let Some(setup) = self.setup {
            let mut conn = pool.get().map_err(TestDatabaseError::Pool)?;
            setup(&mut conn).map_err(TestDatabaseError::Setup)?;
        }
        db.pool = Some(pool);
        Ok(db)
    }
}

/// Why a [`TestDatabase`] could not be made (or removed).
#[derive(Debug)]
#[non_exhaustive]
pub enum TestDatabaseError {
    /// A server backend needs a server: neither `DATABASE_URL` nor
    /// [`server_url`](TestDatabaseBuilder::server_url) names one.
    NoServerUrl {
        /// The backend.
        backend: Backend,
    },
    /// The server URL is not a `scheme://...` URL the database name can be
    /// put into (libpq's `key=value` form is not taken here).
    BadServerUrl {
        /// The URL, without its password.
        url: String,
    },
    /// `CREATE DATABASE` or `DROP DATABASE` failed, or the server could not
    /// be reached to send it.
    Admin {
        /// The statement.
        statement: String,
        /// The server, without the password.
        server: String,
        /// The driver's error.
        source: BoxError,
    },
    /// The SQLite file could not be made or removed.
    TempFile {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The pool on the new database could not be built.
    Pool(crate::Error),
    /// The set-up closure failed.
    Setup(BoxError),
}

impl fmt::Display for TestDatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestDatabaseError::NoServerUrl { backend } => write!(
                f,
                "a {backend} test database needs a server: set DATABASE_URL to a URL whose user \
                 may create databases, or call `.server_url(...)`"
            ),
            TestDatabaseError::BadServerUrl { url } => write!(
                f,
                "cannot put a database name into `{url}`: give a `scheme://user@host:port/db` URL"
            ),
            TestDatabaseError::Admin {
                statement, server, ..
            } => write!(f, "`{statement}` failed on {server}"),
            TestDatabaseError::TempFile { path, .. } => {
                write!(f, "test database file {}", path.display())
            }
            TestDatabaseError::Pool(_) => f.write_str("the test database's pool"),
            TestDatabaseError::Setup(_) => f.write_str("the test database's set-up failed"),
        }
    }
}

impl std::error::Error for TestDatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TestDatabaseError::Admin { source, .. } | TestDatabaseError::Setup(source) => {
                Some(&**source)
            }
            TestDatabaseError::TempFile { source, .. } => Some(source),
            TestDatabaseError::Pool(e) => Some(e),
            _ => None,
        }
    }
}

/// `db_txn_test_<pid>_<n>_<time>`: unique across the tests of a process and
/// across processes; a valid unquoted identifier on every server.
fn unique_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() % 1_000_000_000_000);
    format!("db_txn_test_{}_{n}_{micros}", std::process::id())
}

/// `server` with its database replaced by `name`.
fn with_database(server: &str, name: &str) -> Result<String, TestDatabaseError> {
    let bad = || TestDatabaseError::BadServerUrl {
        url: if server.contains("://") {
            crate::pool::redact_url(server)
        } else {
            // libpq's `key=value` pairs: without the password.
            server
                .split_whitespace()
                .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                .collect::<Vec<_>>()
                .join(" ")
        },
    };
    let (scheme, rest) = server.split_once("://").ok_or_else(bad)?;
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or("");
    if authority.is_empty() && scheme.starts_with("mysql") {
        return Err(bad());
    }
    let mut url = format!("{scheme}://{authority}/{name}");
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

fn create_database<C: TxnConnection>(server: &str, name: &str) -> Result<(), TestDatabaseError> {
    let sql = format!("CREATE DATABASE {name}");
    // PostgreSQL refuses concurrent copies of its template now and then
    // ("source database \"template1\" is being accessed by other users"):
    // parallel tests try again.
    let mut tries = 0;
    loop {
        match admin::<C>(server, &sql) {
            Err(TestDatabaseError::Admin { source, .. })
                if tries < 20 && source.to_string().contains("being accessed by other users") =>
            {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Send `sql` over a connection of its own to `url`.
fn admin<C: TxnConnection>(url: &str, sql: &str) -> Result<(), TestDatabaseError> {
    let fail = |source: BoxError| TestDatabaseError::Admin {
        statement: sql.to_owned(),
        server: crate::pool::redact_url(url),
        source,
    };
    let mut conn = crate::backend::establish::<C>(url).map_err(|e| fail(e.into()))?;
    conn.batch_execute(sql).map_err(|e| fail(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_goes_where_the_urls_database_was() {
        assert_eq!(
            with_database(
                "mysql://root:pw@127.0.0.1:3307/test?ssl_mode=disabled",
                "t1"
            )
            .unwrap(),
            "mysql://root:pw@127.0.0.1:3307/t1?ssl_mode=disabled"
        );
        assert_eq!(
            with_database("postgres://u@h:5432", "t2").unwrap(),
            "postgres://u@h:5432/t2"
        );
        assert_eq!(
            with_database("postgresql://u@h/postgres?sslmode=disable", "t3").unwrap(),
            "postgresql://u@h/t3?sslmode=disable"
        );
        let err = with_database("host=h dbname=x password=secret", "t").unwrap_err();
        assert!(matches!(err, TestDatabaseError::BadServerUrl { .. }));
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn names_are_unique_identifiers() {
        let (a, b) = (unique_name(), unique_name());
        assert_ne!(a, b);
        assert!(a.len() <= 63, "{a}");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'));
    }
}
