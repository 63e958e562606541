//! The contenders on diesel's synchronous connections, stamped out once per
//! backend by [`backend!`].
//!
//! All run the same SQL, built by diesel's query builder, each on its own
//! database (or SQLite file) of the same server, through a pool of the same
//! size:
//!
//! - raw diesel + r2d2, `conn.transaction(..)` (and on SQLite also
//!   `conn.immediate_transaction(..)`), each with `test_on_check_out(false)`
//!   (no ping) and with r2d2's default `SELECT 1` on every checkout;
//! - `#[db_txn]` with default settings, on the pool `db_txn::install`ed for
//!   the connection type (the README's way of using it).
//!
//! The raw SQLite pools get the pragmas `db_txn` sets on a new connection
//! (WAL, `synchronous = NORMAL`, `busy_timeout = 5000`), so that the two
//! differ in the transaction machinery and the BEGIN only.

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ConnectionManager, CustomizeConnection};

use crate::contenders::{CallError, Ping};

/// Rows in each contender's table; every `v` starts at 0.
pub const ROWS: i64 = 1000;
/// Connections per pool, for every contender and workload.
pub const POOL_SIZE: u32 = 4;

/// Session settings for the raw SQLite pools.
#[derive(Debug)]
struct Pragmas(&'static str);

impl<C: SimpleConnection> CustomizeConnection<C, r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut C) -> Result<(), r2d2::Error> {
        conn.batch_execute(self.0).map_err(r2d2::Error::QueryError)
    }
}

fn raw_pool<C: r2d2::R2D2Connection + 'static>(
    url: &str,
    ping: Ping,
    pragmas: Option<&'static str>,
) -> r2d2::Pool<ConnectionManager<C>> {
    let builder = r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .test_on_check_out(ping == Ping::Yes);
    let builder = match pragmas {
        Some(sql) => builder.connection_customizer(Box::new(Pragmas(sql))),
        None => builder,
    };
    builder
        .build(ConnectionManager::new(url))
        .unwrap_or_else(|e| panic!("raw pool on {url}: {e}"))
}

/// What a caller of a `#[db_txn]` function saw.
pub fn db_error(e: db_txn::Error) -> CallError {
    CallError {
        commit_unknown: matches!(e, db_txn::Error::CommitUnknown { .. }),
        message: e.to_string(),
    }
}

fn raw_error(e: impl std::fmt::Display) -> CallError {
    CallError {
        commit_unknown: false,
        message: e.to_string(),
    }
}

diesel::table! {
    kv (id) {
        id -> BigInt,
        v -> BigInt,
    }
}

/// A module `$module` with the transactions on `$conn` and its `Bench`.
/// `immediate`: the diesel method for `Begin::Immediate`, if the backend has
/// one; `lock`: the locking clause of the read in the read-modify-write, if
/// the backend has one.
macro_rules! backend {
    ($module:ident, $conn:ty, $backend:expr, id_sql: $id_sql:literal,
     pragmas: $pragmas:expr $(, immediate: $immediate:ident)? $(, lock: $lock:ident)?) => {
        pub mod $module {
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;
            use diesel::r2d2::{self, ConnectionManager};

            use super::{kv, POOL_SIZE, ROWS};
            use crate::contenders::{Backend, Begin, CallError, Contender, Ping, Subject, Txn};

            type Conn = $conn;
            type Raw = r2d2::Pool<ConnectionManager<Conn>>;

            fn point_read_sql(conn: &mut Conn, id: i64) -> QueryResult<i64> {
                kv::table.find(id).select(kv::v).get_result(conn)
            }

            fn rmw_sql(conn: &mut Conn, id: i64) -> QueryResult<i64> {
                let v: i64 = kv::table
                    .find(id)
                    .select(kv::v)
                    $(.$lock())?
                    .get_result(conn)?;
                diesel::update(kv::table.find(id))
                    .set(kv::v.eq(v + 1))
                    .execute(conn)?;
                Ok(v + 1)
            }

            #[db_txn::db_txn]
            pub fn point_read(conn: &mut Conn, id: i64) -> Result<i64, db_txn::Error> {
                Ok(point_read_sql(conn, id)?)
            }

            #[db_txn::db_txn]
            pub fn rmw(conn: &mut Conn, id: i64) -> Result<i64, db_txn::Error> {
                Ok(rmw_sql(conn, id)?)
            }

            /// [`point_read`] on an explicit pool.
            #[db_txn::db_txn(pool = pool)]
            pub fn point_read_on(
                conn: &mut Conn,
                pool: &db_txn::Pool<Conn>,
                id: i64,
            ) -> Result<i64, db_txn::Error> {
                Ok(point_read_sql(conn, id)?)
            }

            /// [`rmw`] on an explicit pool.
            #[db_txn::db_txn(pool = pool)]
            pub fn rmw_on(
                conn: &mut Conn,
                pool: &db_txn::Pool<Conn>,
                id: i64,
            ) -> Result<i64, db_txn::Error> {
                Ok(rmw_sql(conn, id)?)
            }

            /// A diesel transaction around `body`, begun the way `begin` says.
            fn transaction<T>(
                conn: &mut Conn,
                begin: Begin,
                body: impl FnOnce(&mut Conn) -> QueryResult<T>,
            ) -> QueryResult<T> {
                #[allow(unreachable_patterns)]
                match begin {
                    Begin::Transaction => conn.transaction(body),
                    $(Begin::Immediate => conn.$immediate(body),)?
                    _ => Err(diesel::result::Error::QueryBuilderError(
                        format!("{begin:?} on {}", $backend.label()).into(),
                    )),
                }
            }

            /// The hand-written equivalent of [`point_read`].
            pub fn raw_point_read(pool: &Raw, begin: Begin, id: i64) -> Result<i64, CallError> {
                let mut pooled = pool.get().map_err(super::raw_error)?;
                transaction(&mut pooled, begin, |c| point_read_sql(c, id))
                    .map_err(super::raw_error)
            }

            /// [`raw_point_read`] after [`crate::pad::run`] (a calibration run).
            pub fn raw_point_read_padded(pool: &Raw, begin: Begin, id: i64) -> Result<i64, CallError> {
                std::hint::black_box(crate::pad::run(id as u64));
                raw_point_read(pool, begin, id)
            }

            /// [`raw_rmw`] after [`crate::pad::run`] (a calibration run).
            pub fn raw_rmw_padded(pool: &Raw, begin: Begin, id: i64) -> Result<i64, CallError> {
                std::hint::black_box(crate::pad::run(id as u64));
                raw_rmw(pool, begin, id)
            }

            /// The hand-written equivalent of [`rmw`].
            pub fn raw_rmw(pool: &Raw, begin: Begin, id: i64) -> Result<i64, CallError> {
                let mut pooled = pool.get().map_err(super::raw_error)?;
                transaction(&mut pooled, begin, |c| rmw_sql(c, id)).map_err(super::raw_error)
            }

            /// Creates the table in an empty database.
            pub fn create_schema(url: &str) {
                let mut conn = Conn::establish(url)
                    .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
                let rows: Vec<String> = (0..ROWS).map(|i| format!("({i}, 0)")).collect();
                conn.batch_execute(&format!(
                    concat!("CREATE TABLE kv (id ", $id_sql, " PRIMARY KEY, v BIGINT NOT NULL); ",
                            "INSERT INTO kv (id, v) VALUES {}"),
                    rows.join(", ")
                ))
                .unwrap_or_else(|e| panic!("schema on {url}: {e}"));
            }

            /// Every row's `v`, by id, on a connection of its own (a pool
            /// may hold dead ones).
            pub fn values(url: &str) -> Vec<i64> {
                let mut conn = Conn::establish(url)
                    .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
                kv::table
                    .select(kv::v)
                    .order(kv::id)
                    .load(&mut conn)
                    .unwrap_or_else(|e| panic!("SELECT v on {url}: {e}"))
            }

            /// A raw pool as the raw contenders use it.
            pub fn raw_pool(url: &str, ping: Ping) -> Raw {
                super::raw_pool(url, ping, $pragmas)
            }

            /// A `#[db_txn]` pool as the `#[db_txn]` contender uses it.
            pub fn db_txn_pool(url: &str) -> db_txn::Pool<Conn> {
                db_txn::Pool::<Conn>::builder(url)
                    .max_size(POOL_SIZE)
                    .build()
                    .unwrap_or_else(|e| panic!("db_txn pool on {url}: {e}"))
            }

            /// Transactions `txn` by `variant` (a contender's key: see
            /// [`crate::callgrind::variants`]) on the empty database `url`,
            /// for the callgrind child.
            pub fn calls(variant: &str, txn: Txn, url: &str) -> Box<dyn FnMut(u64)> {
                create_schema(url);
                let id = |i: u64| (i % ROWS as u64) as i64;
                let rmw_txn = txn == Txn::Rmw;
                let raw = $backend
                    .contenders()
                    .iter()
                    .find(|c| c.key() == variant);
                match (variant, raw) {
                    (_, Some(&Contender::Raw(begin, ping))) => {
                        let pool = raw_pool(url, ping);
                        if crate::pad::enabled() {
                            return Box::new(move |i| {
                                let r = if rmw_txn {
                                    raw_rmw_padded(&pool, begin, id(i))
                                } else {
                                    raw_point_read_padded(&pool, begin, id(i))
                                };
                                std::hint::black_box(r.expect("raw call"));
                            });
                        }
                        Box::new(move |i| {
                            let r = if rmw_txn {
                                raw_rmw(&pool, begin, id(i))
                            } else {
                                raw_point_read(&pool, begin, id(i))
                            };
                            std::hint::black_box(r.expect("raw call"));
                        })
                    }
                    ("db_txn_explicit", _) => {
                        let pool = db_txn_pool(url);
                        Box::new(move |i| {
                            let r = if rmw_txn {
                                rmw_on(&pool, id(i))
                            } else {
                                point_read_on(&pool, id(i))
                            };
                            std::hint::black_box(r.expect("db_txn call"));
                        })
                    }
                    ("db_txn", _) => {
                        db_txn::install(db_txn_pool(url));
                        Box::new(move |i| {
                            let r = if rmw_txn { rmw(id(i)) } else { point_read(id(i)) };
                            std::hint::black_box(r.expect("db_txn call"));
                        })
                    }
                    (other, _) => panic!("unknown variant {other}"),
                }
            }

            /// One contender's pool.
            enum Slot {
                Raw(Raw, Begin),
                /// A hand-written contender that also runs the padding.
                RawPadded(Raw, Begin),
                DbTxn(db_txn::Pool<Conn>),
                /// The pool `#[db_txn(pool = pool)]` is given (not installed).
                DbTxnExplicit(db_txn::Pool<Conn>),
            }

            /// The backend's contenders, each on its database, with its
            /// schema created.
            pub struct Bench {
                contenders: &'static [Contender],
                urls: Vec<String>,
                slots: Vec<Slot>,
            }

            impl Bench {
                /// `url(who)` names an empty database for contender `who`.
                /// Also installs the `#[db_txn]` pool as the default for `Conn`.
                pub fn new(url: impl Fn(Contender) -> String) -> Self {
                    let contenders = $backend.contenders();
                    let urls: Vec<String> = contenders.iter().map(|c| url(*c)).collect();
                    urls.iter().for_each(|url| create_schema(url));
                    let slots = contenders
                        .iter()
                        .zip(&urls)
                        .map(|(who, url)| match *who {
                            Contender::Raw(begin, ping) if crate::pad::enabled() => {
                                Slot::RawPadded(raw_pool(url, ping), begin)
                            }
                            Contender::Raw(begin, ping) => Slot::Raw(raw_pool(url, ping), begin),
                            Contender::DbTxn => {
                                let pool = db_txn_pool(url);
                                db_txn::install(pool.clone());
                                Slot::DbTxn(pool)
                            }
                            Contender::DbTxnExplicit => Slot::DbTxnExplicit(db_txn_pool(url)),
                        })
                        .collect();
                    Bench { contenders, urls, slots }
                }
            }

            impl Subject for Bench {
                fn backend(&self) -> Backend {
                    $backend
                }

                fn contenders(&self) -> &[Contender] {
                    self.contenders
                }

                fn call(&self, who: usize, txn: Txn, id: i64) -> Result<(), CallError> {
                    let result = match (&self.slots[who], txn) {
                        (Slot::DbTxn(_), Txn::PointRead) => {
                            point_read(id).map_err(super::db_error)
                        }
                        (Slot::DbTxn(_), Txn::Rmw) => rmw(id).map_err(super::db_error),
                        (Slot::DbTxnExplicit(pool), Txn::PointRead) => {
                            point_read_on(pool, id).map_err(super::db_error)
                        }
                        (Slot::DbTxnExplicit(pool), Txn::Rmw) => {
                            rmw_on(pool, id).map_err(super::db_error)
                        }
                        (Slot::Raw(pool, begin), Txn::PointRead) => {
                            raw_point_read(pool, *begin, id)
                        }
                        (Slot::Raw(pool, begin), Txn::Rmw) => raw_rmw(pool, *begin, id),
                        (Slot::RawPadded(pool, begin), Txn::PointRead) => {
                            raw_point_read_padded(pool, *begin, id)
                        }
                        (Slot::RawPadded(pool, begin), Txn::Rmw) => {
                            raw_rmw_padded(pool, *begin, id)
                        }
                    };
                    result.map(drop)
                }

                fn committed(&self, who: usize) -> i64 {
                    // Summed here: SUM(BIGINT) is NUMERIC on MariaDB and PostgreSQL.
                    values(&self.urls[who]).iter().sum()
                }

                fn db_txn_pings(&self) -> (u64, u64) {
                    self.slots
                        .iter()
                        .find_map(|s| match s {
                            Slot::DbTxn(pool) => Some(pool.stats()),
                            Slot::Raw(..) | Slot::RawPadded(..) | Slot::DbTxnExplicit(_) => None,
                        })
                        .map_or((0, 0), |s| (s.pings, s.pings_skipped))
                }
            }
        }
    };
}

backend!(sqlite, diesel::SqliteConnection, Backend::Sqlite, id_sql: "INTEGER",
    pragmas: Some("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"),
    immediate: immediate_transaction);
backend!(mysql, diesel::MysqlConnection, Backend::MariaDb, id_sql: "BIGINT",
    pragmas: None, lock: for_update);
backend!(postgres, diesel::PgConnection, Backend::Postgres, id_sql: "BIGINT",
    pragmas: None, lock: for_update);
