//! What `resolve_commit` costs in the steady state (issue 10), on MariaDB
//! and PostgreSQL: `#[db_txn(pool = pool)]` on two pools of the same server
//! that differ only in `PoolBuilder::resolve_commit`, each on its own
//! database, taking turns after every transaction (the order alternating
//! each round) like the main workloads.
//!
//! Besides latency, each variant then runs alone for a counted stretch:
//!
//! * round trips per transaction: the data segments the client sent on its
//!   sockets to the server (`TCP_INFO` `tcpi_data_segs_out`), summed over
//!   the process's sockets to the server's port; every request of these
//!   drivers fits one segment and waits for its answer;
//! * what the server wrote per transaction: MariaDB rows inserted, updated
//!   and deleted (`Handler_write`, `_update`, `_delete`) and redo bytes
//!   (`Innodb_lsn_current`); PostgreSQL WAL bytes (`pg_current_wal_lsn()`).
//!   Server-wide counters, so only this variant runs meanwhile, and what
//!   reading them adds by itself is measured and taken out.
//!
//! On PostgreSQL it also compares, in raw SQL on one connection, the two
//! ways a lost COMMIT's outcome can be found: reading the transaction id
//! before COMMIT (one round trip, what `db_txn` does) and a marker row
//! inserted in the BEGIN batch (no round trip, one row written), as the
//! MariaDB scheme does.

use std::os::fd::RawFd;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::Connection;

use crate::contenders::{self, Txn, POOL_SIZE, ROWS};
use crate::workloads::{Config, Samples};

/// One server and transaction: resolution off and on.
pub struct Row {
    pub backend: &'static str,
    pub txn: Txn,
    /// Off, on.
    pub samples: [Samples; 2],
    /// Off, on.
    pub counted: [Counted; 2],
}

/// Per transaction, measured over a stretch where only one variant ran.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counted {
    pub round_trips: f64,
    /// MariaDB only: rows inserted, updated, deleted.
    pub rows: Option<f64>,
    /// Redo (MariaDB) or WAL (PostgreSQL) bytes.
    pub log_bytes: f64,
}

/// The raw-SQL comparison of the PostgreSQL schemes: plain, transaction id,
/// marker row.
pub struct Schemes {
    pub samples: [Samples; 3],
    pub counted: [Counted; 3],
}

/// Everything this module adds to the report.
#[derive(Default)]
pub struct Results {
    pub rows: Vec<Row>,
    pub schemes: Option<Schemes>,
}

/// Counted transactions per variant.
fn counted_calls(smoke: bool) -> u64 {
    if smoke {
        20
    } else {
        2000
    }
}

/// Client data segments sent so far on the sockets to `port`.
fn segments_out(port: u16) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| peer_port(fd) == Some(port))
        .map(|fd| u64::from(tcp_info(fd).map_or(0, |i| i.tcpi_data_segs_out)))
        .sum()
}

fn peer_port(fd: RawFd) -> Option<u16> {
    // SAFETY: a zeroed sockaddr_in is valid; getpeername writes at most `len` bytes.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: as above, on a descriptor of this process (any kind).
    let rc =
        unsafe { libc::getpeername(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len) };
    (rc == 0 && i32::from(addr.sin_family) == libc::AF_INET).then(|| u16::from_be(addr.sin_port))
}

fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // SAFETY: a zeroed tcp_info is valid; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: as above.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info)
}

/// Server-side counters: (rows, log bytes).
type ServerCounters<'a> = &'a dyn Fn() -> (Option<u64>, u64);

/// Runs `call` `n` times alone and divides what the counters moved by `n`.
fn count(
    port: u16,
    server: ServerCounters<'_>,
    n: u64,
    call: &mut dyn FnMut(u64) -> Result<(), String>,
    problems: &mut Vec<String>,
) -> Counted {
    // What reading the counters adds by itself, taken out below.
    let (r0, l0) = server();
    let (r1, l1) = server();
    let segs = segments_out(port);
    let (rows, log) = server();
    for i in 0..n {
        if let Err(e) = call(i) {
            problems.push(e);
            break;
        }
    }
    let (rows_after, log_after) = server();
    let segs_after = segments_out(port);
    let per = |d: u64, own: u64| d.saturating_sub(own) as f64 / n as f64;
    let own_rows = r0.zip(r1).map_or(0, |(a, b)| b.saturating_sub(a));
    Counted {
        round_trips: per(segs_after.saturating_sub(segs), 0),
        rows: rows
            .zip(rows_after)
            .map(|(a, b)| per(b.saturating_sub(a), own_rows)),
        log_bytes: per(log_after.saturating_sub(log), l1.saturating_sub(l0)),
    }
}

/// `variants` take turns after every transaction, in an order that rotates
/// each round; the first `cfg.warmup` rounds are not recorded.
fn interleaved<const N: usize>(
    cfg: &Config,
    variants: &mut [&mut dyn FnMut(u64) -> Result<(), String>; N],
    problems: &mut Vec<String>,
) -> [Samples; N] {
    let mut out: [Samples; N] = std::array::from_fn(|_| Samples {
        block: cfg.block,
        ..Samples::default()
    });
    let started = Instant::now();
    for round in 0..cfg.warmup + cfg.rounds {
        for k in 0..N {
            let v = (round + k) % N;
            let t0 = Instant::now();
            let r = (variants[v])(round as u64);
            let took = t0.elapsed().as_nanos() as u64;
            if let Err(e) = r {
                out[v].errors += 1;
                out[v].first_error.get_or_insert(e);
            }
            if round >= cfg.warmup {
                out[v].nanos.push(took);
            }
        }
    }
    for s in &mut out {
        s.wall = started.elapsed();
        if s.errors > 0 {
            problems.push(format!(
                "resolve_commit workload: {} errors, first: {}",
                s.errors,
                s.first_error.as_deref().unwrap_or("")
            ));
        }
    }
    out
}

/// A row id spread over the table.
fn row(n: u64) -> i64 {
    (n.wrapping_mul(7919) % ROWS as u64) as i64
}

/// The off/on comparison for one backend, on two fresh databases.
macro_rules! compare {
    ($name:ident, $module:ident, $conn:ty, $label:literal) => {
        fn $name(
            urls: [String; 2],
            port: u16,
            server: ServerCounters<'_>,
            cfg: &Config,
            smoke: bool,
            out: &mut Results,
            problems: &mut Vec<String>,
        ) {
            use contenders::$module::{create_schema, point_read_on, rmw_on};
            let pools = [false, true].map(|on| {
                let url = &urls[usize::from(on)];
                create_schema(url);
                db_txn::Pool::<$conn>::builder(url)
                    .max_size(POOL_SIZE)
                    .resolve_commit(on)
                    .build()
                    .unwrap_or_else(|e| panic!("db_txn pool on {url}: {e}"))
            });
            for txn in [Txn::PointRead, Txn::Rmw] {
                let call = |pool: &db_txn::Pool<$conn>, n: u64| {
                    let r = match txn {
                        Txn::PointRead => point_read_on(pool, row(n)),
                        Txn::Rmw => rmw_on(pool, row(n)),
                    };
                    r.map(drop).map_err(|e| format!("{} {txn:?}: {e}", $label))
                };
                let (off, on) = (&pools[0], &pools[1]);
                let samples = interleaved(
                    cfg,
                    &mut [&mut |n| call(off, n), &mut |n| call(on, n)],
                    problems,
                );
                let n = counted_calls(smoke);
                let counted =
                    [off, on].map(|pool| count(port, server, n, &mut |i| call(pool, i), problems));
                out.rows.push(Row {
                    backend: $label,
                    txn,
                    samples,
                    counted,
                });
            }
            // Every read-modify-write of each pool committed once.
            for (on, url) in [false, true].iter().zip(&urls) {
                let expected = ((cfg.warmup + cfg.rounds) as u64 + counted_calls(smoke)) as i64;
                let sum = committed::<$conn>(url);
                if sum != expected {
                    problems.push(format!(
                        "{} resolve_commit({}): {sum} read-modify-writes committed, {expected} \
                         acknowledged",
                        $label, on
                    ));
                }
            }
        }
    };
}

compare!(compare_mysql, mysql, diesel::MysqlConnection, "MariaDB");
compare!(
    compare_postgres,
    postgres,
    diesel::PgConnection,
    "PostgreSQL"
);

/// The MariaDB rows.
pub fn mariadb(
    server: &db_txn_tests::MariaDb,
    cfg: &Config,
    smoke: bool,
    out: &mut Results,
    problems: &mut Vec<String>,
) {
    let urls =
        ["resolve_off", "resolve_on"].map(|d| server.create_database(&format!("bench_m_{d}")));
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
    compare_mysql(urls, server.port(), &counters, cfg, smoke, out, problems);
}

/// The PostgreSQL rows, and the comparison of the two schemes.
pub fn postgres(
    server: &db_txn_tests::Postgres,
    cfg: &Config,
    smoke: bool,
    out: &mut Results,
    problems: &mut Vec<String>,
) {
    let urls =
        ["resolve_off", "resolve_on"].map(|d| server.create_database(&format!("bench_p_{d}")));
    let wal = || {
        (
            None,
            server.query_i64("SELECT pg_current_wal_lsn() - '0/0'") as u64,
        )
    };
    compare_postgres(urls, server.port(), &wal, cfg, smoke, out, problems);
    out.schemes = Some(pg_schemes(server, &wal, cfg, smoke, problems));
}

/// What `db_txn` reads before COMMIT on PostgreSQL (`backend/postgres/resolve.rs`).
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
    /// And a marker row inserted in the BEGIN batch.
    Marker(i64),
}

fn pg_rmw(conn: &mut diesel::PgConnection, scheme: Scheme, id: i64) -> Result<(), String> {
    use diesel::pg::data_types::PgTimestamp;
    use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
    use diesel::{QueryableByName, RunQueryDsl};

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
        Scheme::Marker(m) => {
            format!("BEGIN; INSERT INTO db_txn_commit_markers (id) VALUES ({m})")
        }
        _ => "BEGIN".to_owned(),
    };
    let mut run = || -> diesel::QueryResult<()> {
        conn.batch_execute(&begin)?;
        diesel::sql_query(format!("SELECT v FROM kv WHERE id = {id} FOR UPDATE")).execute(conn)?;
        diesel::sql_query(format!("UPDATE kv SET v = v + 1 WHERE id = {id}")).execute(conn)?;
        if let Scheme::Xid = scheme {
            let x: Xid = diesel::sql_query(XID_SQL).get_result(conn)?;
            std::hint::black_box((x.txid, x.pid, x.started, x.wal));
        }
        conn.batch_execute("COMMIT")
    };
    run().map_err(|e| format!("PostgreSQL raw read-modify-write: {e}"))
}

/// The read-modify-write in raw SQL three ways, on a connection each.
fn pg_schemes(
    server: &db_txn_tests::Postgres,
    wal: ServerCounters<'_>,
    cfg: &Config,
    smoke: bool,
    problems: &mut Vec<String>,
) -> Schemes {
    let url = server.create_database("bench_p_schemes");
    contenders::postgres::create_schema(&url);
    let connect = || diesel::PgConnection::establish(&url).expect("connect");
    connect()
        .batch_execute(
            "CREATE TABLE db_txn_commit_markers (id BIGINT NOT NULL PRIMARY KEY, \
             created TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .expect("marker table");
    let (mut c0, mut c1, mut c2) = (connect(), connect(), connect());
    let mut marker = 0i64;
    let mut plain = |n| pg_rmw(&mut c0, Scheme::Plain, row(n));
    let mut xid = |n| pg_rmw(&mut c1, Scheme::Xid, row(n));
    let mut mark = |n| {
        marker += 1;
        pg_rmw(&mut c2, Scheme::Marker(marker), row(n))
    };
    let samples = interleaved(cfg, &mut [&mut plain, &mut xid, &mut mark], problems);
    let n = counted_calls(smoke);
    let port = server.port();
    let counted = [
        count(port, wal, n, &mut plain, problems),
        count(port, wal, n, &mut xid, problems),
        count(port, wal, n, &mut mark, problems),
    ];
    Schemes { samples, counted }
}

/// `SUM(v)` of the table at `url` (summed here: SUM(BIGINT) is NUMERIC).
fn committed<C: Connection>(url: &str) -> i64
where
    diesel::query_builder::SqlQuery: for<'a> diesel::query_dsl::LoadQuery<'a, C, V>,
{
    use diesel::RunQueryDsl;
    let mut conn = C::establish(url).unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let rows: Vec<V> = diesel::sql_query("SELECT v FROM kv")
        .load(&mut conn)
        .unwrap_or_else(|e| panic!("SELECT v on {url}: {e}"));
    rows.iter().map(|r| r.v).sum()
}

#[derive(diesel::QueryableByName)]
struct V {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    v: i64,
}

/// The interquartile range of the ratio a/b of the block medians.
fn spread(a: &Samples, b: &Samples) -> (f64, f64) {
    let mut r: Vec<f64> = a
        .block_medians()
        .iter()
        .zip(&b.block_medians())
        .map(|(x, y)| *x as f64 / (*y).max(1) as f64)
        .collect();
    r.sort_by(f64::total_cmp);
    let q = |p: f64| {
        r.get((p * (r.len().max(1) - 1) as f64).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    (q(0.25), q(0.75))
}

fn rows_cell(c: &Counted) -> String {
    c.rows.map_or("–".into(), |r| format!("{r:.2}"))
}

/// The off/on table.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| backend | workload | off: median / p99 µs | on: median / p99 µs | on/off median \
         (blocks IQR) | on/off p99 | round trips off / on | rows written off / on | log bytes \
         off / on |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        let [off, on] = [&r.samples[0], &r.samples[1]].map(Samples::summary);
        let (a, b) = spread(&r.samples[1], &r.samples[0]);
        let [c0, c1] = &r.counted;
        t += &format!(
            "| {} | {} | {:.1} / {:.1} | {:.1} / {:.1} | {:.3} ({a:.3}–{b:.3}) | {:.3} | {:.2} / \
             {:.2} | {} / {} | {:.0} / {:.0} |\n",
            r.backend,
            match r.txn {
                Txn::PointRead => "point-read",
                Txn::Rmw => "read-modify-write",
            },
            off.median_us,
            off.p99_us,
            on.median_us,
            on.p99_us,
            on.median_us / off.median_us,
            on.p99_us / off.p99_us,
            c0.round_trips,
            c1.round_trips,
            rows_cell(c0),
            rows_cell(c1),
            c0.log_bytes,
            c1.log_bytes,
        );
    }
    t
}

/// The PostgreSQL schemes table.
pub fn schemes_table(s: &Schemes) -> String {
    let mut t = String::from(
        "| PostgreSQL read-modify-write, raw SQL | median / p99 µs | vs plain: median (blocks \
         IQR) | round trips | WAL bytes |\n| --- | --- | --- | --- | --- |\n",
    );
    let names = [
        "BEGIN .. COMMIT",
        "+ transaction id read before COMMIT (db_txn's scheme)",
        "+ marker row inserted in the BEGIN batch (the alternative)",
    ];
    let plain = s.samples[0].summary();
    for (i, name) in names.iter().enumerate() {
        let m = s.samples[i].summary();
        let (a, b) = spread(&s.samples[i], &s.samples[0]);
        t += &format!(
            "| {name} | {:.1} / {:.1} | {:.3} ({a:.3}–{b:.3}) | {:.2} | {:.0} |\n",
            m.median_us,
            m.p99_us,
            m.median_us / plain.median_us,
            s.counted[i].round_trips,
            s.counted[i].log_bytes,
        );
    }
    t
}
