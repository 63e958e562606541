//! The three contenders, stamped out once per backend by [`backend!`].
//!
//! All three run the same SQL, built by diesel's query builder, on their own
//! database (or SQLite file) of the same server, through a pool of the same
//! size:
//!
//! 1. raw diesel + r2d2 with `test_on_check_out(false)`: no ping, the floor;
//! 2. raw diesel + r2d2 with its default `SELECT 1` on every checkout;
//! 3. `#[db_txn]` with default settings, on the pool `db_txn::install`ed for
//!    the connection type (the README's way of using it).
//!
//! The raw transactions are diesel's own `conn.transaction(..)`; on SQLite
//! `conn.immediate_transaction(..)`, because `#[db_txn]` begins SQLite
//! transactions with `BEGIN IMMEDIATE` and the SQL must be the same. The raw
//! SQLite pools get the pragmas `db_txn` sets on a new connection (WAL,
//! `synchronous = NORMAL`, `busy_timeout = 5000`).

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ConnectionManager, CustomizeConnection};

/// Rows in each contender's table; every `v` starts at 0.
pub const ROWS: i64 = 1000;
/// Connections per pool, for every contender and workload.
pub const POOL_SIZE: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    RawNoPing,
    RawPing,
    DbTxn,
}

impl Contender {
    pub const ALL: [Contender; 3] = [Contender::RawNoPing, Contender::RawPing, Contender::DbTxn];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The name in tables and on the chart.
    pub fn label(self) -> &'static str {
        match self {
            Contender::RawNoPing => "(1) raw r2d2, no ping",
            Contender::RawPing => "(2) raw r2d2 + ping",
            Contender::DbTxn => "(3) #[db_txn]",
        }
    }

    /// The name of its database.
    fn key(self) -> &'static str {
        match self {
            Contender::RawNoPing => "raw_noping",
            Contender::RawPing => "raw_ping",
            Contender::DbTxn => "db_txn",
        }
    }
}

/// The transactions the workloads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Txn {
    /// `SELECT v FROM kv WHERE id = ?`.
    PointRead,
    /// `SELECT v .. [FOR UPDATE]`, then `UPDATE kv SET v = v' WHERE id = ?`.
    Rmw,
}

/// An error a caller saw.
#[derive(Debug)]
pub struct CallError {
    /// The COMMIT was sent and the connection lost: outcome unknown.
    pub commit_unknown: bool,
    pub message: String,
}

/// One backend with its three contenders set up.
pub trait Subject: Sync {
    fn backend(&self) -> &'static str;
    /// One transaction by `who`, on row `id`.
    fn call(&self, who: Contender, txn: Txn, id: i64) -> Result<(), CallError>;
    /// `SUM(v)` in `who`'s table: the number of read-modify-writes committed.
    fn committed(&self, who: Contender) -> i64;
    /// Pings and skipped pings by the `#[db_txn]` pool so far.
    fn db_txn_pings(&self) -> (u64, u64);
}

/// The name of `who`'s database on a server, unique per run `tag`.
pub fn database_name(tag: &str, who: Contender) -> String {
    format!("bench_{tag}_{}", who.key())
}

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
    ping: bool,
    pragmas: Option<&'static str>,
) -> r2d2::Pool<ConnectionManager<C>> {
    let builder = r2d2::Pool::builder()
        .max_size(POOL_SIZE)
        .test_on_check_out(ping);
    let builder = match pragmas {
        Some(sql) => builder.connection_customizer(Box::new(Pragmas(sql))),
        None => builder,
    };
    builder
        .build(ConnectionManager::new(url))
        .unwrap_or_else(|e| panic!("raw pool on {url}: {e}"))
}

fn db_error(e: db_txn::Error) -> CallError {
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
/// `begin`: the diesel method that runs a raw transaction; `lock`: the
/// locking clause of the read in the read-modify-write, if the backend has one.
macro_rules! backend {
    ($module:ident, $conn:ty, $name:literal, id_sql: $id_sql:literal,
     pragmas: $pragmas:expr, begin: $begin:ident $(, lock: $lock:ident)?) => {
        pub mod $module {
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;
            use diesel::r2d2::{self, ConnectionManager};

            use super::{kv, CallError, Contender, Subject, Txn, POOL_SIZE, ROWS};

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

            /// [`point_read`] on an explicit pool (for the instruction counts).
            #[db_txn::db_txn(pool = pool)]
            pub fn point_read_on(
                conn: &mut Conn,
                pool: &db_txn::Pool<Conn>,
                id: i64,
            ) -> Result<i64, db_txn::Error> {
                Ok(point_read_sql(conn, id)?)
            }

            /// [`rmw`] on an explicit pool (for the instruction counts).
            #[db_txn::db_txn(pool = pool)]
            pub fn rmw_on(
                conn: &mut Conn,
                pool: &db_txn::Pool<Conn>,
                id: i64,
            ) -> Result<i64, db_txn::Error> {
                Ok(rmw_sql(conn, id)?)
            }

            /// The hand-written equivalent of [`point_read`].
            pub fn raw_point_read(pool: &Raw, id: i64) -> Result<i64, CallError> {
                let mut pooled = pool.get().map_err(super::raw_error)?;
                let conn: &mut Conn = &mut pooled;
                conn.$begin(|c| point_read_sql(c, id))
                    .map_err(super::raw_error)
            }

            /// The hand-written equivalent of [`rmw`].
            pub fn raw_rmw(pool: &Raw, id: i64) -> Result<i64, CallError> {
                let mut pooled = pool.get().map_err(super::raw_error)?;
                let conn: &mut Conn = &mut pooled;
                conn.$begin(|c| rmw_sql(c, id)).map_err(super::raw_error)
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

            /// A raw pool as the raw contenders use it.
            pub fn raw_pool(url: &str, ping: bool) -> Raw {
                super::raw_pool(url, ping, $pragmas)
            }

            /// A `#[db_txn]` pool as contender (3) uses it.
            fn db_txn_pool(url: &str) -> db_txn::Pool<Conn> {
                db_txn::Pool::<Conn>::builder(url)
                    .max_size(POOL_SIZE)
                    .build()
                    .unwrap_or_else(|e| panic!("db_txn pool on {url}: {e}"))
            }

            /// Transactions `txn` by `variant` (see [`crate::callgrind::VARIANTS`])
            /// on the empty database `url`, for the callgrind child.
            pub fn calls(variant: &str, txn: Txn, url: &str) -> Box<dyn FnMut(u64)> {
                create_schema(url);
                let id = |i: u64| (i % ROWS as u64) as i64;
                let rmw_txn = txn == Txn::Rmw;
                match variant {
                    "raw_noping" | "raw_ping" => {
                        let pool = raw_pool(url, variant == "raw_ping");
                        Box::new(move |i| {
                            let r = if rmw_txn {
                                raw_rmw(&pool, id(i))
                            } else {
                                raw_point_read(&pool, id(i))
                            };
                            std::hint::black_box(r.expect("raw call"));
                        })
                    }
                    "db_txn_explicit" => {
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
                    "db_txn" => {
                        db_txn::install(db_txn_pool(url));
                        Box::new(move |i| {
                            let r = if rmw_txn { rmw(id(i)) } else { point_read(id(i)) };
                            std::hint::black_box(r.expect("db_txn call"));
                        })
                    }
                    other => panic!("unknown variant {other}"),
                }
            }

            /// The three contenders on the databases `urls` (in
            /// [`Contender::ALL`] order), each with its schema created.
            pub struct Bench {
                urls: [String; 3],
                raw_noping: Raw,
                raw_ping: Raw,
                db_txn: db_txn::Pool<Conn>,
            }

            impl Bench {
                /// Also installs the `#[db_txn]` pool as the default for `Conn`.
                pub fn new(urls: [String; 3]) -> Self {
                    urls.iter().for_each(|url| create_schema(url));
                    let [noping, ping, ours] = &urls;
                    let db_txn = db_txn_pool(ours);
                    db_txn::install(db_txn.clone());
                    Bench {
                        raw_noping: raw_pool(noping, false),
                        raw_ping: raw_pool(ping, true),
                        db_txn,
                        urls,
                    }
                }

                fn raw(&self, who: Contender) -> &Raw {
                    match who {
                        Contender::RawPing => &self.raw_ping,
                        _ => &self.raw_noping,
                    }
                }
            }

            impl Subject for Bench {
                fn backend(&self) -> &'static str {
                    $name
                }

                fn call(&self, who: Contender, txn: Txn, id: i64) -> Result<(), CallError> {
                    let result = match (who, txn) {
                        (Contender::DbTxn, Txn::PointRead) => {
                            point_read(id).map_err(super::db_error)
                        }
                        (Contender::DbTxn, Txn::Rmw) => rmw(id).map_err(super::db_error),
                        (raw, Txn::PointRead) => raw_point_read(self.raw(raw), id),
                        (raw, Txn::Rmw) => raw_rmw(self.raw(raw), id),
                    };
                    result.map(drop)
                }

                fn committed(&self, who: Contender) -> i64 {
                    // A connection of its own: a raw pool may hold dead ones.
                    let url = &self.urls[who.index()];
                    let mut conn = Conn::establish(url)
                        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
                    // Summed here: SUM(BIGINT) is NUMERIC on MariaDB and PostgreSQL.
                    let values: Vec<i64> = kv::table
                        .select(kv::v)
                        .load(&mut conn)
                        .unwrap_or_else(|e| panic!("SELECT v on {url}: {e}"));
                    values.iter().sum()
                }

                fn db_txn_pings(&self) -> (u64, u64) {
                    let s = self.db_txn.stats();
                    (s.pings, s.pings_skipped)
                }
            }
        }
    };
}

backend!(sqlite, diesel::SqliteConnection, "SQLite", id_sql: "INTEGER",
    pragmas: Some("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"),
    begin: immediate_transaction);
backend!(mysql, diesel::MysqlConnection, "MariaDB", id_sql: "BIGINT",
    pragmas: None, begin: transaction, lock: for_update);
backend!(postgres, diesel::PgConnection, "PostgreSQL", id_sql: "BIGINT",
    pragmas: None, begin: transaction, lock: for_update);
