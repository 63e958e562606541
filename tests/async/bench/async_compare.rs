//! `cargo bench -p db_txn_async_tests --bench async_compare`: `#[db_txn]` on
//! `async fn` against hand-written diesel-async transactions on diesel-async's
//! own deadpool pool, and against the sync form through `spawn_blocking`, on
//! MariaDB and PostgreSQL, in one process.
//!
//! Contenders, each on its own database of the same server, each through a
//! pool of 4 connections, running the same SQL built by diesel's query
//! builder:
//!
//! 1. **diesel-async + deadpool, Fast**: `diesel_async::pooled_connection::deadpool`
//!    with `RecyclingMethod::Fast` (no check at checkout) and
//!    `conn.transaction(async |c| ..)`: the floor;
//! 2. **diesel-async + deadpool, Verified**: the same with its default
//!    recycling method, a `SELECT 1` at every checkout;
//! 3. **`#[db_txn]` async**: an `async fn` on an `AsyncPool` with default
//!    settings (`max_size(4)`);
//! 4. **`#[db_txn]` sync + spawn_blocking**: the sync form on a `Pool`
//!    (`max_size(4)`), called through `tokio::task::spawn_blocking`, as
//!    async services had to before.
//!
//! Workloads on `kv (id BIGINT PRIMARY KEY, v BIGINT)`, 1000 rows: a
//! point-read transaction and a read-modify-write transaction (`SELECT ..
//! FOR UPDATE`, `UPDATE`) from a single task, with the contenders taking
//! turns after every transaction (the order cycling through the
//! permutations); then the read-modify-write from 64 tasks at once on each
//! contender's pool of 4, the contenders taking turns by bursts. Afterwards
//! every contender's `SUM(v)` must equal the read-modify-writes it
//! acknowledged.
//!
//! Options: `--smoke` (a few transactions each; checks correctness only),
//! `--only mariadb,postgres`, `--pin one|none`: by default the program and
//! the servers it starts share one CPU, as in `tests/bench/` (see its
//! `pin.rs`: unpinned on a two-core VM, where a connection's round trips
//! land decides more than the code does).

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use db_txn::{db_txn, AsyncPool, Pool};
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::pooled_connection::deadpool::Pool as DeadPool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, AsyncPgConnection};

diesel::table! {
    kv (id) {
        id -> BigInt,
        v -> BigInt,
    }
}

const ROWS: i64 = 1000;
const POOL: u32 = 4;
const TASKS: usize = 64;

const NAMES: [&str; 4] = [
    "diesel-async + deadpool, Fast",
    "diesel-async + deadpool, Verified",
    "#[db_txn] async fn",
    "#[db_txn] sync fn + spawn_blocking",
];

type BoxFut<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// One contender: a point-read and a read-modify-write transaction.
trait Contender: Send + Sync {
    fn read(&self, id: i64) -> BoxFut<'_>;
    fn rmw(&self, id: i64) -> BoxFut<'_>;
}

/// The contenders of one backend, written once for both connection types.
macro_rules! contenders {
    ($module:ident, $async_conn:ty, $sync_conn:ty) => {
        mod $module {
            use super::*;

            type AC = $async_conn;
            type SC = $sync_conn;

            pub struct Raw(pub DeadPool<AC>);

            impl Raw {
                pub async fn new(url: &str, method: RecyclingMethod<AC>) -> Raw {
                    let mut config = ManagerConfig::default();
                    config.recycling_method = method;
                    let manager = AsyncDieselConnectionManager::<AC>::new_with_config(url, config);
                    let pool = DeadPool::builder(manager)
                        .max_size(POOL as usize)
                        .build()
                        .expect("deadpool");
                    Raw(pool)
                }
            }

            impl Contender for Raw {
                fn read(&self, id: i64) -> BoxFut<'_> {
                    Box::pin(async move {
                        let mut conn = self.0.get().await.map_err(|e| e.to_string())?;
                        conn.transaction::<_, diesel::result::Error, _>(async |c| {
                            use diesel_async::RunQueryDsl;
                            kv::table.find(id).select(kv::v).first::<i64>(c).await
                        })
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                    })
                }
                fn rmw(&self, id: i64) -> BoxFut<'_> {
                    Box::pin(async move {
                        let mut conn = self.0.get().await.map_err(|e| e.to_string())?;
                        conn.transaction::<_, diesel::result::Error, _>(async |c| {
                            use diesel_async::RunQueryDsl;
                            let v: i64 = kv::table
                                .find(id)
                                .select(kv::v)
                                .for_update()
                                .first(c)
                                .await?;
                            diesel::update(kv::table.find(id))
                                .set(kv::v.eq(v + 1))
                                .execute(c)
                                .await
                        })
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                    })
                }
            }

            #[db_txn(pool = pool)]
            async fn read(
                conn: &mut AC,
                pool: &AsyncPool<AC>,
                id: i64,
            ) -> Result<i64, db_txn::Error> {
                use diesel_async::RunQueryDsl;
                Ok(kv::table.find(id).select(kv::v).first(conn).await?)
            }

            #[db_txn(pool = pool)]
            async fn rmw(
                conn: &mut AC,
                pool: &AsyncPool<AC>,
                id: i64,
            ) -> Result<usize, db_txn::Error> {
                use diesel_async::RunQueryDsl;
                let v: i64 = kv::table
                    .find(id)
                    .select(kv::v)
                    .for_update()
                    .first(conn)
                    .await?;
                Ok(diesel::update(kv::table.find(id))
                    .set(kv::v.eq(v + 1))
                    .execute(conn)
                    .await?)
            }

            pub struct Async(pub AsyncPool<AC>);

            impl Contender for Async {
                fn read(&self, id: i64) -> BoxFut<'_> {
                    Box::pin(
                        async move { read(&self.0, id).await.map(drop).map_err(|e| e.to_string()) },
                    )
                }
                fn rmw(&self, id: i64) -> BoxFut<'_> {
                    Box::pin(
                        async move { rmw(&self.0, id).await.map(drop).map_err(|e| e.to_string()) },
                    )
                }
            }

            #[db_txn(pool = pool)]
            fn read_sync(conn: &mut SC, pool: &Pool<SC>, id: i64) -> Result<i64, db_txn::Error> {
                use diesel::RunQueryDsl;
                Ok(kv::table.find(id).select(kv::v).first(conn)?)
            }

            #[db_txn(pool = pool)]
            fn rmw_sync(conn: &mut SC, pool: &Pool<SC>, id: i64) -> Result<usize, db_txn::Error> {
                use diesel::RunQueryDsl;
                let v: i64 = kv::table.find(id).select(kv::v).for_update().first(conn)?;
                Ok(diesel::update(kv::table.find(id))
                    .set(kv::v.eq(v + 1))
                    .execute(conn)?)
            }

            pub struct Blocking(pub Pool<SC>);

            impl Contender for Blocking {
                fn read(&self, id: i64) -> BoxFut<'_> {
                    let pool = self.0.clone();
                    Box::pin(async move {
                        tokio::task::spawn_blocking(move || read_sync(&pool, id))
                            .await
                            .map_err(|e| e.to_string())?
                            .map(drop)
                            .map_err(|e| e.to_string())
                    })
                }
                fn rmw(&self, id: i64) -> BoxFut<'_> {
                    let pool = self.0.clone();
                    Box::pin(async move {
                        tokio::task::spawn_blocking(move || rmw_sync(&pool, id))
                            .await
                            .map_err(|e| e.to_string())?
                            .map(drop)
                            .map_err(|e| e.to_string())
                    })
                }
            }

            /// The four contenders on four databases of the server at `url(db)`.
            pub async fn contenders(url: impl Fn(&str) -> String) -> Vec<Arc<dyn Contender>> {
                // mysql_async over TCP, as to a remote server.
                let async_url = |db: &str| match stringify!($module) {
                    "pg" => url(db),
                    _ => url(db) + "?prefer_socket=false",
                };
                vec![
                    Arc::new(Raw::new(&async_url("c0"), RecyclingMethod::Fast).await),
                    Arc::new(Raw::new(&async_url("c1"), RecyclingMethod::Verified).await),
                    Arc::new(Async(
                        AsyncPool::builder(async_url("c2"))
                            .max_size(POOL)
                            .build()
                            .await
                            .expect("async pool"),
                    )),
                    Arc::new(Blocking({
                        let url = url("c3");
                        tokio::task::spawn_blocking(move || {
                            Pool::<SC>::builder(url)
                                .max_size(POOL)
                                .build()
                                .expect("pool")
                        })
                        .await
                        .expect("pool thread")
                    })),
                ]
            }
        }
    };
}

contenders!(pg, AsyncPgConnection, diesel::PgConnection);
contenders!(my, AsyncMysqlConnection, diesel::MysqlConnection);

/// How much work a run does.
#[derive(Clone, Copy)]
struct Config {
    /// Unrecorded, then recorded transactions per contender, single task.
    warmup: usize,
    samples: usize,
    /// Unrecorded, then recorded bursts per contender, 64 tasks.
    burst_warmup: usize,
    bursts: usize,
    /// Transactions per task per burst.
    per_task: usize,
}

const FULL: Config = Config {
    warmup: 200,
    samples: 3000,
    burst_warmup: 2,
    bursts: 12,
    per_task: 10,
};

const SMOKE: Config = Config {
    warmup: 2,
    samples: 20,
    burst_warmup: 0,
    bursts: 1,
    per_task: 2,
};

/// What one contender got in one workload.
#[derive(Default)]
struct Samples {
    nanos: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    /// Wall time of the recorded bursts.
    wall: Duration,
}

impl Samples {
    fn record(&mut self, took: Duration, r: Result<(), String>) {
        match r {
            Ok(()) => self
                .nanos
                .push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX)),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn quantile(&self, q: f64) -> f64 {
        let mut v = self.nanos.clone();
        v.sort_unstable();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i] as f64 / 1000.0
    }
}

/// A cheap pseudo-random row id.
struct Ids(u64);

impl Ids {
    fn next(&mut self) -> i64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % ROWS as u64) as i64 + 1
    }
}

/// The 24 orders of 4 contenders.
fn orders() -> Vec<[usize; 4]> {
    let mut out = Vec::new();
    for a in 0..4 {
        for b in 0..4 {
            for c in 0..4 {
                for d in 0..4 {
                    let o = [a, b, c, d];
                    if (0..4).all(|i| o.contains(&i)) {
                        out.push(o);
                    }
                }
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Read,
    Rmw,
}

/// One transaction at a time, the contenders taking turns after each.
async fn single(
    cs: &[Arc<dyn Contender>],
    kind: Kind,
    cfg: Config,
    acked: &[AtomicU64],
) -> Vec<Samples> {
    let mut out: Vec<Samples> = (0..cs.len()).map(|_| Samples::default()).collect();
    let orders = orders();
    let mut ids = Ids(0x9e37_79b9_7f4a_7c15);
    for i in 0..cfg.warmup + cfg.samples {
        for &c in &orders[i % orders.len()] {
            let id = ids.next();
            let started = Instant::now();
            let r = match kind {
                Kind::Read => cs[c].read(id).await,
                Kind::Rmw => cs[c].rmw(id).await,
            };
            let took = started.elapsed();
            if kind == Kind::Rmw && r.is_ok() {
                acked[c].fetch_add(1, Relaxed);
            }
            if i >= cfg.warmup {
                out[c].record(took, r);
            }
        }
    }
    out
}

/// 64 tasks at once on each contender's pool of 4, the contenders taking
/// turns by bursts.
async fn contended(
    cs: &[Arc<dyn Contender>],
    cfg: Config,
    acked: &Arc<Vec<AtomicU64>>,
) -> Vec<Samples> {
    let mut out: Vec<Samples> = (0..cs.len()).map(|_| Samples::default()).collect();
    let orders = orders();
    for round in 0..cfg.burst_warmup + cfg.bursts {
        for &c in &orders[round % orders.len()] {
            let started = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let (contender, acked) = (cs[c].clone(), acked.clone());
                    tokio::spawn(async move {
                        let mut ids = Ids(0x2545_f491_4f6c_dd1d ^ ((round * TASKS + t) as u64 + 1));
                        let mut seen = Vec::new();
                        for _ in 0..cfg.per_task {
                            let t0 = Instant::now();
                            let r = contender.rmw(ids.next()).await;
                            if r.is_ok() {
                                acked[c].fetch_add(1, Relaxed);
                            }
                            seen.push((t0.elapsed(), r));
                        }
                        seen
                    })
                })
                .collect();
            let mut seen = Vec::new();
            for task in tasks {
                seen.extend(task.await.expect("task"));
            }
            if round >= cfg.burst_warmup {
                out[c].wall += started.elapsed();
                for (took, r) in seen {
                    out[c].record(took, r);
                }
            }
        }
    }
    out
}

/// The workloads of one backend; `sums` reads each contender's `SUM(v)`.
async fn run_backend(
    name: &str,
    cs: Vec<Arc<dyn Contender>>,
    cfg: Config,
    sums: impl Fn() -> Vec<i64>,
) -> Result<String, String> {
    let acked = Arc::new((0..cs.len()).map(|_| AtomicU64::new(0)).collect::<Vec<_>>());
    let read = single(&cs, Kind::Read, cfg, &acked).await;
    let rmw = single(&cs, Kind::Rmw, cfg, &acked).await;
    let busy = contended(&cs, cfg, &acked).await;
    let mut out = String::new();
    for (title, samples, throughput) in [
        ("point-read transaction, 1 task", &read, false),
        ("read-modify-write transaction, 1 task", &rmw, false),
        ("read-modify-write, 64 tasks / pool of 4", &busy, true),
    ] {
        out += &format!("\n**{name}: {title}**\n\n");
        out += "| contender | median µs | p99 µs | median ÷ Fast |";
        out += if throughput {
            " txn/s |\n|---|--:|--:|--:|--:|\n"
        } else {
            "\n|---|--:|--:|--:|\n"
        };
        let floor = samples[0].quantile(0.5);
        for (c, s) in samples.iter().enumerate() {
            if s.errors > 0 {
                return Err(format!(
                    "{name}, {title}: {} error(s) for {}: {}",
                    s.errors,
                    NAMES[c],
                    s.first_error.as_deref().unwrap_or("")
                ));
            }
            let median = s.quantile(0.5);
            out += &format!(
                "| {} | {:.0} | {:.0} | {:.2} |",
                NAMES[c],
                median,
                s.quantile(0.99),
                median / floor
            );
            if throughput {
                let n = s.nanos.len() as f64;
                out += &format!(" {:.0} |", n / s.wall.as_secs_f64());
            }
            out += "\n";
        }
    }
    let sums = sums();
    for (c, sum) in sums.iter().enumerate() {
        let want = acked[c].load(Relaxed) as i64;
        if *sum != want {
            return Err(format!(
                "{name}: {} has SUM(v) = {sum}, but {want} read-modify-writes were acknowledged",
                NAMES[c]
            ));
        }
    }
    out += &format!("\n{name}: every contender's SUM(v) equals its acknowledged read-modify-writes ({sums:?}).\n");
    Ok(out)
}

/// `kv` with its rows, in a fresh database `db`.
fn table_sql() -> String {
    let rows: Vec<String> = (1..=ROWS).map(|i| format!("({i}, 0)")).collect();
    format!(
        "CREATE TABLE kv (id BIGINT PRIMARY KEY, v BIGINT NOT NULL); INSERT INTO kv (id, v) VALUES {}",
        rows.join(", ")
    )
}

/// Pins this thread (and so the runtime's threads and the servers started
/// after it) to the first CPU it may use.
fn pin_to_one_cpu() -> String {
    // SAFETY: `set` is a plain bit set; the calls fill in or read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of_val(&set);
        if libc::sched_getaffinity(0, size, &mut set) != 0 {
            return "not pinned: sched_getaffinity failed".into();
        }
        let Some(cpu) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)) else {
            return "not pinned: no CPU in the mask".into();
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, size, &one) != 0 {
            return "not pinned: sched_setaffinity failed".into();
        }
        format!("pinned to CPU {cpu}, with the servers")
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let unpinned = args.windows(2).any(|w| w[0] == "--pin" && w[1] == "none");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let placement = if unpinned {
        "not pinned".to_owned()
    } else {
        pin_to_one_cpu()
    };
    let only: Vec<String> = match args.iter().position(|a| a == "--only") {
        Some(i) => args
            .get(i + 1)
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        None => vec!["mariadb".into(), "postgres".into()],
    };
    let cfg = if smoke { SMOKE } else { FULL };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let mut report = format!(
        "## `async fn`\n\n{} transactions per contender and workload (1 task), {} bursts of {TASKS} \
         tasks x {} (64 tasks); {placement}; load average {}\n",
        cfg.samples,
        cfg.bursts,
        cfg.per_task,
        load.split(' ').next().unwrap_or("?")
    );
    for backend in &only {
        let result = match backend.as_str() {
            "postgres" => {
                let server = db_txn_tests::Postgres::start().expect("PostgreSQL");
                let port = server.port();
                for db in ["c0", "c1", "c2", "c3"] {
                    server.create_database(db);
                    server.exec_in(db, &table_sql());
                }
                let url = move |db: &str| format!("postgres://postgres@127.0.0.1:{port}/{db}");
                runtime.block_on(async {
                    let cs = pg::contenders(url).await;
                    let sums = || {
                        ["c0", "c1", "c2", "c3"]
                            .map(|db| server.query_i64_in(db, "SELECT COALESCE(SUM(v), 0) FROM kv"))
                            .to_vec()
                    };
                    run_backend("PostgreSQL", cs, cfg, sums).await
                })
            }
            "mariadb" => {
                let server = db_txn_tests::MariaDb::start().expect("MariaDB");
                let port = server.port();
                for db in ["c0", "c1", "c2", "c3"] {
                    server.create_database(db);
                    server.exec_in(db, &table_sql());
                }
                let url = move |db: &str| format!("mysql://root@127.0.0.1:{port}/{db}");
                runtime.block_on(async {
                    let cs = my::contenders(url).await;
                    let sums = || {
                        ["c0", "c1", "c2", "c3"]
                            .map(|db| server.query_i64_in(db, "SELECT COALESCE(SUM(v), 0) FROM kv"))
                            .to_vec()
                    };
                    run_backend("MariaDB", cs, cfg, sums).await
                })
            }
            other => Err(format!("--only: unknown backend {other:?}")),
        };
        match result {
            Ok(tables) => report += &tables,
            Err(e) => {
                eprintln!("async_compare: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("{report}");
    println!(
        "({} s{})",
        started.elapsed().as_secs(),
        if smoke {
            ", smoke: correctness only"
        } else {
            ""
        }
    );
    ExitCode::SUCCESS
}
