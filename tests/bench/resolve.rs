//! What `resolve_commit` costs in the steady state (issue 10), on MariaDB
//! and PostgreSQL: `#[db_txn(pool = pool)]` on two pools of the run's server
//! that differ only in `PoolBuilder::resolve_commit`, each on a database of
//! its own, taking turns after every transaction like the main workloads
//! ([`turns`]), on the same rows. Then each variant runs a stretch alone,
//! counted ([`counted`]): round trips, and what the server wrote (MariaDB
//! rows and redo bytes, PostgreSQL WAL bytes).
//!
//! On PostgreSQL it also compares, in raw SQL on one connection each, the
//! two ways a lost COMMIT's outcome can be found: reading the transaction
//! id before COMMIT (one round trip, what `db_txn` does) and a marker row
//! inserted in the BEGIN batch (no round trip, one row written), as the
//! MariaDB scheme does.
//!
//! Checks: no error; every read-modify-write acknowledged is in its table
//! once; the tables of the two pools, which ran the same read-modify-writes,
//! are equal row for row (and on PostgreSQL, one marker row per
//! acknowledged marker transaction).

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

use crate::contenders::{Backend, CallError, Txn};
use crate::counted::{self, Counted, ServerCounters};
use crate::diesel_sync::{self, db_error, kv, POOL_SIZE};
use crate::results::{ResolveRow, RunResult, SchemesRow, Timing};
use crate::workloads::{row, turns, Config, Samples};

/// One server's two pools, `resolve_commit` off and on.
struct OffOn<'a> {
    backend: Backend,
    /// `call(on, txn, id)`.
    call: &'a dyn Fn(bool, Txn, i64) -> Result<(), CallError>,
    /// Off, on.
    urls: &'a [String; 2],
    /// Every row's `v` of a database, by id.
    values: fn(&str) -> Vec<i64>,
    port: u16,
    server: ServerCounters<'a>,
}

/// Errors in `samples` (named `names`) are problems.
fn errors(what: &str, samples: &[Samples], names: &[&str], out: &mut RunResult) {
    for (s, name) in samples.iter().zip(names) {
        if s.errors > 0 {
            out.problems.push(format!(
                "{what} {name}: {} errors, first: {}",
                s.errors,
                s.first_error.as_deref().unwrap_or("")
            ));
        }
    }
}

fn off_on(v: &OffOn, cfg: &Config, out: &mut RunResult) {
    let name = v.backend.label();
    let mut acked = [0i64; 2];
    for txn in [Txn::PointRead, Txn::Rmw] {
        let mut call = |variant: usize, n: u64| {
            let result = (v.call)(variant == 1, txn, row(n));
            if result.is_ok() && txn == Txn::Rmw {
                acked[variant] += 1;
            }
            result
        };
        let samples = turns(2, cfg, &mut call);
        let what = format!("{name} resolve_commit {txn:?}");
        errors(&what, &samples, &["off", "on"], out);
        let mut counted = [Counted::default(); 2];
        for (variant, c) in counted.iter_mut().enumerate() {
            let alone = &mut |i| call(variant, i);
            match counted::count(v.port, v.server, cfg.counted, alone) {
                Ok(figures) => *c = figures,
                Err(e) => out.problems.push(format!(
                    "{what} {}, counted: {}",
                    ["off", "on"][variant],
                    e.message
                )),
            }
        }
        out.resolve.push(ResolveRow {
            backend: v.backend,
            txn,
            timing: [samples[0].timing(), samples[1].timing()],
            counted,
        });
    }
    let tables = v.urls.each_ref().map(|url| (v.values)(url));
    for (on, (values, acked)) in tables.iter().zip(acked).enumerate() {
        let sum: i64 = values.iter().sum();
        if sum != acked {
            out.problems.push(format!(
                "{name} resolve_commit({}): {sum} read-modify-writes committed, {acked} \
                 acknowledged",
                on == 1
            ));
        }
    }
    if tables[0] != tables[1] {
        let differ = tables[0].iter().zip(&tables[1]).filter(|(a, b)| a != b);
        out.problems.push(format!(
            "{name}: resolve_commit off and on ran the same read-modify-writes, but {} rows \
             differ",
            differ.count()
        ));
    }
}

/// The databases of the two pools on a server: off, on.
fn databases(tag: &str, create: impl Fn(&str) -> String) -> [String; 2] {
    ["off", "on"].map(|v| create(&format!("bench_{tag}_resolve_{v}")))
}

/// The MariaDB rows.
pub fn mariadb(server: &db_txn_tests::MariaDb, cfg: &Config, out: &mut RunResult) {
    use diesel_sync::mysql::{create_schema, point_read_on, rmw_on, values};
    let urls = databases("m", |n| server.create_database(n));
    let pools = [false, true].map(|on| {
        let url = &urls[usize::from(on)];
        create_schema(url);
        db_txn::Pool::<diesel::MysqlConnection>::builder(url)
            .max_size(POOL_SIZE)
            .resolve_commit(on)
            .build()
            .unwrap_or_else(|e| panic!("db_txn pool on {url}: {e}"))
    });
    let call = |on: bool, txn: Txn, id: i64| {
        let pool = &pools[usize::from(on)];
        let result = match txn {
            Txn::PointRead => point_read_on(pool, id),
            Txn::Rmw => rmw_on(pool, id),
        };
        result.map(drop).map_err(db_error)
    };
    // Handler_* count rows written by any engine (the status query's own
    // temporary table included: `count` takes that out); the LSN is InnoDB's
    // redo position.
    let counters = || {
        let sum = |names: &str| {
            server.query_i64(&format!(
                "SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME IN ({names})"
            )) as u64
        };
        (
            Some(sum("'HANDLER_WRITE', 'HANDLER_UPDATE', 'HANDLER_DELETE'")),
            sum("'INNODB_LSN_CURRENT'"),
        )
    };
    let v = OffOn {
        backend: Backend::MariaDb,
        call: &call,
        urls: &urls,
        values,
        port: server.port(),
        server: &counters,
    };
    off_on(&v, cfg, out);
}

/// The PostgreSQL rows, and the comparison of the two schemes.
pub fn postgres(server: &db_txn_tests::Postgres, cfg: &Config, out: &mut RunResult) {
    use diesel_sync::postgres::{create_schema, point_read_on, rmw_on, values};
    let urls = databases("p", |n| server.create_database(n));
    let pools = [false, true].map(|on| {
        let url = &urls[usize::from(on)];
        create_schema(url);
        db_txn::Pool::<diesel::PgConnection>::builder(url)
            .max_size(POOL_SIZE)
            .resolve_commit(on)
            .build()
            .unwrap_or_else(|e| panic!("db_txn pool on {url}: {e}"))
    });
    let call = |on: bool, txn: Txn, id: i64| {
        let pool = &pools[usize::from(on)];
        let result = match txn {
            Txn::PointRead => point_read_on(pool, id),
            Txn::Rmw => rmw_on(pool, id),
        };
        result.map(drop).map_err(db_error)
    };
    let wal = || {
        (
            None,
            server.query_i64("SELECT pg_current_wal_lsn() - '0/0'") as u64,
        )
    };
    let v = OffOn {
        backend: Backend::Postgres,
        call: &call,
        urls: &urls,
        values,
        port: server.port(),
        server: &wal,
    };
    off_on(&v, cfg, out);
    schemes(server, &wal, cfg, out);
}

/// What `db_txn` reads before COMMIT on PostgreSQL (`BEFORE_COMMIT_SQL` in
/// `runtime/src/backend/postgres/resolve.rs`, not public: keep the two
/// alike).
const XID_SQL: &str = "SELECT txid_current_if_assigned() AS txid, \
     pg_backend_pid() AS pid, pg_postmaster_start_time() AS started, \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END \
     AS wal";

/// How the PostgreSQL read-modify-write is wrapped.
#[derive(Clone, Copy)]
enum Scheme {
    /// BEGIN .. COMMIT.
    Plain,
    /// And the transaction id read before COMMIT.
    Xid,
    /// And a marker row (this id) inserted in the BEGIN batch.
    Marker(i64),
}

/// The three schemes, as the table names them.
const SCHEMES: [&str; 3] = ["plain", "transaction id", "marker row"];

/// The read-modify-write of the contenders (diesel's query builder), in a
/// transaction begun and committed by hand the way `scheme` says.
fn pg_rmw(conn: &mut diesel::PgConnection, scheme: Scheme, id: i64) -> Result<(), CallError> {
    use diesel::pg::data_types::PgTimestamp;
    use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};

    #[derive(QueryableByName)]
    struct Xid {
        #[diesel(sql_type = Nullable<BigInt>)]
        txid: Option<i64>,
        #[diesel(sql_type = Integer)]
        pid: i32,
        #[diesel(sql_type = Timestamptz)]
        started: PgTimestamp,
        #[diesel(sql_type = Nullable<Text>)]
        wal: Option<String>,
    }

    let begin = match scheme {
        Scheme::Marker(m) => format!("BEGIN; INSERT INTO db_txn_commit_markers (id) VALUES ({m})"),
        Scheme::Plain | Scheme::Xid => "BEGIN".to_owned(),
    };
    let mut run = || -> QueryResult<()> {
        conn.batch_execute(&begin)?;
        let v: i64 = kv::table
            .find(id)
            .select(kv::v)
            .for_update()
            .get_result(conn)?;
        diesel::update(kv::table.find(id))
            .set(kv::v.eq(v + 1))
            .execute(conn)?;
        if let Scheme::Xid = scheme {
            let x: Xid = diesel::sql_query(XID_SQL).get_result(conn)?;
            std::hint::black_box((x.txid, x.pid, x.started, x.wal));
        }
        conn.batch_execute("COMMIT")
    };
    run().map_err(|e| CallError {
        commit_unknown: false,
        message: format!("PostgreSQL raw read-modify-write: {e}"),
    })
}

/// The read-modify-write in raw SQL three ways, on a connection each, one
/// database.
fn schemes(
    server: &db_txn_tests::Postgres,
    wal: ServerCounters<'_>,
    cfg: &Config,
    out: &mut RunResult,
) {
    let db = "bench_p_schemes";
    let url = server.create_database(db);
    diesel_sync::postgres::create_schema(&url);
    let connect = || {
        diesel::PgConnection::establish(&url).unwrap_or_else(|e| panic!("connect to {url}: {e}"))
    };
    connect()
        .batch_execute(
            "CREATE TABLE db_txn_commit_markers (id BIGINT NOT NULL PRIMARY KEY, \
             created TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .unwrap_or_else(|e| panic!("marker table on {url}: {e}"));
    let mut conns = [connect(), connect(), connect()];
    let mut markers = 0i64;
    let mut acked = [0i64; 3];
    let mut call = |variant: usize, n: u64| {
        let scheme = match variant {
            0 => Scheme::Plain,
            1 => Scheme::Xid,
            _ => Scheme::Marker(markers + 1),
        };
        let result = pg_rmw(&mut conns[variant], scheme, row(n));
        if result.is_ok() {
            acked[variant] += 1;
            if let Scheme::Marker(m) = scheme {
                markers = m;
            }
        }
        result
    };
    let samples = turns(3, cfg, &mut call);
    errors("PostgreSQL raw SQL", &samples, &SCHEMES, out);
    let mut counted = [Counted::default(); 3];
    for (variant, c) in counted.iter_mut().enumerate() {
        match counted::count(server.port(), wal, cfg.counted, &mut |i| call(variant, i)) {
            Ok(figures) => *c = figures,
            Err(e) => out.problems.push(format!(
                "PostgreSQL raw SQL {}, counted: {}",
                SCHEMES[variant], e.message
            )),
        }
    }
    let timing: [Timing; 3] = std::array::from_fn(|i| samples[i].timing());
    out.schemes = Some(SchemesRow { timing, counted });
    let sum: i64 = diesel_sync::postgres::values(&url).iter().sum();
    let rows = server.query_i64_in(db, "SELECT COUNT(*) FROM db_txn_commit_markers");
    if sum != acked.iter().sum::<i64>() || rows != acked[2] {
        out.problems.push(format!(
            "PostgreSQL raw SQL: {sum} read-modify-writes committed and {rows} marker rows, \
             {acked:?} acknowledged (plain, transaction id, marker row)"
        ));
    }
}
