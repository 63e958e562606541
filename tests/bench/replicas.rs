//! What read replicas cost (MariaDB, PostgreSQL): a primary with one replica
//! (the kit's GTID replica, streaming standby), and `#[db_txn]` pools with
//! and without [`replica`](db_txn::PoolBuilder::replica), each on a database
//! of its own, taking turns after every call as the main workloads do.
//!
//! * **point-read** (`read_only`, no write on this thread): the pool without
//!   replicas reads the primary; the pool with one routes the read to the
//!   replica. The difference is the routing.
//! * **write, then read it** (a read-modify-write, then a `read_only` read of
//!   the same row on the same thread): without replicas both run on the
//!   primary; with one, the write also reads its commit position, and the
//!   read waits until the replica shows it (read-your-writes), or runs on the
//!   primary after `read_your_writes_timeout`. Every read must return the
//!   value just written: a stale read is a correctness failure.

use std::time::Instant;

use crate::contenders::ROWS;
use crate::workloads::{Config, Samples};

/// One workload's figures: [without replicas, with a replica].
pub struct Row {
    pub backend: &'static str,
    pub workload: &'static str,
    pub samples: [Samples; 2],
    /// Of the pool with a replica: (reads on the replica, on the primary,
    /// waits for the replica).
    pub routed: (u64, u64, u64),
}

/// The two pools of one backend.
pub trait Pair {
    fn backend(&self) -> &'static str;
    /// A `read_only` point-read; `replica`: on the pool with a replica.
    fn read(&self, replica: bool, id: i64) -> Result<i64, String>;
    /// A read-modify-write, then a `read_only` read of the row on the same
    /// thread; (written, read).
    fn write_then_read(&self, replica: bool, id: i64) -> Result<(i64, i64), String>;
    /// (replica reads, primary fallbacks, replica waits) of the pool with a
    /// replica for `workload` so far.
    fn routed(&self, write_then_read: bool) -> (u64, u64, u64);
}

/// Both workloads, the two pools taking turns after every call.
pub fn run(pair: &dyn Pair, cfg: &Config, problems: &mut Vec<String>) -> Vec<Row> {
    let mut rows = Vec::new();
    for write_then_read in [false, true] {
        let mut samples: [Samples; 2] = Default::default();
        samples.iter_mut().for_each(|s| s.block = cfg.block);
        let mut stale = 0u64;
        let mut n = 0u64;
        for round in 0..cfg.warmup + cfg.rounds {
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for replica in order {
                n += 1;
                let id = (n.wrapping_mul(7919) % ROWS as u64) as i64;
                let t0 = Instant::now();
                let result = if write_then_read {
                    pair.write_then_read(replica, id).map(|(written, read)| {
                        if written != read {
                            stale += 1;
                        }
                    })
                } else {
                    pair.read(replica, id).map(drop)
                };
                let took = t0.elapsed().as_nanos() as u64;
                let s = &mut samples[usize::from(replica)];
                if let Err(e) = result {
                    s.errors += 1;
                    s.first_error.get_or_insert(e);
                }
                if round >= cfg.warmup {
                    s.nanos.push(took);
                }
            }
        }
        let workload = if write_then_read {
            "write, then read it"
        } else {
            "point-read"
        };
        if stale > 0 {
            problems.push(format!(
                "{} replicas {workload}: {stale} reads did not see the write just made",
                pair.backend()
            ));
        }
        for (s, what) in samples.iter().zip(["without replicas", "with a replica"]) {
            if s.errors > 0 {
                problems.push(format!(
                    "{} replicas {workload} {what}: {} errors, first: {}",
                    pair.backend(),
                    s.errors,
                    s.first_error.as_deref().unwrap_or("")
                ));
            }
        }
        rows.push(Row {
            backend: pair.backend(),
            workload,
            samples,
            routed: pair.routed(write_then_read),
        });
    }
    rows
}

/// `$module::Bench` on `$conn`, with the kv table of the main workloads.
macro_rules! pair {
    ($module:ident, $conn:ty, $name:literal) => {
        pub mod $module {
            use db_txn::Pool;
            use diesel::prelude::*;

            use crate::contenders::kv;
            use crate::contenders::$module::create_schema;

            type Conn = $conn;

            #[db_txn::db_txn(pool = pool, read_only)]
            fn read(conn: &mut Conn, pool: &Pool<Conn>, id: i64) -> Result<i64, db_txn::Error> {
                Ok(kv::table.find(id).select(kv::v).get_result(conn)?)
            }

            #[db_txn::db_txn(pool = pool)]
            fn bump(conn: &mut Conn, pool: &Pool<Conn>, id: i64) -> Result<i64, db_txn::Error> {
                let v: i64 = kv::table
                    .find(id)
                    .select(kv::v)
                    .for_update()
                    .get_result(conn)?;
                diesel::update(kv::table.find(id))
                    .set(kv::v.eq(v + 1))
                    .execute(conn)?;
                Ok(v + 1)
            }

            /// Pools on four databases: (primary only, with a replica) for
            /// each workload.
            pub struct Bench {
                read: [Pool<Conn>; 2],
                pair: [Pool<Conn>; 2],
            }

            impl Bench {
                /// `urls`: the four databases on the primary (created, and
                /// replicated); `replica`: the same databases' URLs on the
                /// replica. Waits until the replica has the schemas.
                pub fn new(urls: [String; 4], replica: [String; 4], caught_up: &dyn Fn()) -> Self {
                    urls.iter().for_each(|url| create_schema(url));
                    caught_up();
                    let pool = |i: usize, with_replica: bool| {
                        let b = Pool::<Conn>::builder(urls[i].clone())
                            .max_size(crate::contenders::POOL_SIZE);
                        let b = if with_replica {
                            b.replica(replica[i].clone())
                        } else {
                            b
                        };
                        b.build()
                            .unwrap_or_else(|e| panic!("pool on {}: {e}", urls[i]))
                    };
                    Bench {
                        read: [pool(0, false), pool(1, true)],
                        pair: [pool(2, false), pool(3, true)],
                    }
                }
            }

            impl super::Pair for Bench {
                fn backend(&self) -> &'static str {
                    $name
                }

                fn read(&self, replica: bool, id: i64) -> Result<i64, String> {
                    read(&self.read[usize::from(replica)], id).map_err(|e| e.to_string())
                }

                fn write_then_read(&self, replica: bool, id: i64) -> Result<(i64, i64), String> {
                    let pool = &self.pair[usize::from(replica)];
                    let written = bump(pool, id).map_err(|e| e.to_string())?;
                    let read = read(pool, id).map_err(|e| e.to_string())?;
                    Ok((written, read))
                }

                fn routed(&self, write_then_read: bool) -> (u64, u64, u64) {
                    let pools = if write_then_read {
                        &self.pair
                    } else {
                        &self.read
                    };
                    let s = pools[1].stats();
                    (s.replica_reads, s.primary_fallbacks, s.replica_waits)
                }
            }
        }
    };
}

pair!(mysql, diesel::MysqlConnection, "MariaDB");
pair!(postgres, diesel::PgConnection, "PostgreSQL");

/// The four databases of `tag` on a primary: (name, URL on the primary, URL
/// on the replica).
pub fn databases(
    tag: &str,
    create: &dyn Fn(&str) -> String,
    on_replica: &dyn Fn(&str) -> String,
) -> ([String; 4], [String; 4]) {
    let names = ["read_p", "read_r", "pair_p", "pair_r"].map(|n| format!("rep_{tag}_{n}"));
    (
        names.clone().map(|n| create(&n)),
        names.map(|n| on_replica(&n)),
    )
}

pub fn mariadb(cfg: &Config, problems: &mut Vec<String>) -> Vec<Row> {
    let primary = db_txn_tests::MariaDb::start_primary().unwrap_or_else(|e| panic!("{e}"));
    let replica = primary.start_replica().unwrap_or_else(|e| panic!("{e}"));
    let port = replica.port();
    let (urls, on_replica) = databases("m", &|n| primary.create_database(n), &|n| {
        format!("mysql://root@127.0.0.1:{port}/{n}")
    });
    let caught_up = || {
        assert!(replica.wait_caught_up(&primary, std::time::Duration::from_secs(30)));
    };
    let bench = mysql::Bench::new(urls, on_replica, &caught_up);
    run(&bench, cfg, problems)
}

pub fn postgres(cfg: &Config, problems: &mut Vec<String>) -> Vec<Row> {
    let primary = db_txn_tests::Postgres::start().unwrap_or_else(|e| panic!("{e}"));
    let replica = primary.start_standby().unwrap_or_else(|e| panic!("{e}"));
    let (urls, on_replica) = databases("p", &|n| primary.create_database(n), &|n| {
        replica.url_for(n)
    });
    let caught_up = || {
        assert!(replica.wait_caught_up(&primary, std::time::Duration::from_secs(30)));
    };
    let bench = postgres::Bench::new(urls, on_replica, &caught_up);
    run(&bench, cfg, problems)
}

/// The Markdown table of `rows`.
pub fn table(rows: &[Row]) -> String {
    fn pct(s: &Samples, p: f64) -> f64 {
        let mut v = s.nanos.clone();
        if v.is_empty() {
            return 0.0;
        }
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i] as f64 / 1000.0
    }
    let mut out = String::from(
        "| backend | workload | without replicas: median / p99 µs | with a replica: median / \
         p99 µs | ratio of medians | reads on the replica / on the primary / waits |\n\
         |---|---|--:|--:|--:|---|\n",
    );
    for r in rows {
        let [a, b] = &r.samples;
        let (ma, mb) = (pct(a, 0.5), pct(b, 0.5));
        out += &format!(
            "| {} | {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.2} | {} / {} / {} |\n",
            r.backend,
            r.workload,
            ma,
            pct(a, 0.99),
            mb,
            pct(b, 0.99),
            if ma > 0.0 { mb / ma } else { 0.0 },
            r.routed.0,
            r.routed.1,
            r.routed.2,
        );
    }
    out
}
