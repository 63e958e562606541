//! What read replicas cost (MariaDB, PostgreSQL): a primary with one replica
//! started for this (the kit's GTID replica, a streaming standby), and
//! `#[db_txn(pool = pool)]` on pools with and without
//! [`replica`](db_txn::PoolBuilder::replica), each on a database of its own
//! on the primary, taking turns after every call as the main workloads do
//! ([`turns`]), on the same rows.
//!
//! * **point-read** (`read_only`, no write on this thread): the pool without
//!   replicas reads the primary; the pool with one routes the read to the
//!   replica. The difference is the routing.
//! * **write, then read it** (a read-modify-write, then a `read_only` read of
//!   the same row on the same thread): without replicas both run on the
//!   primary; with one, the write also reads its commit position, and the
//!   read waits until the replica shows it (read-your-writes), or runs on the
//!   primary after `read_your_writes_timeout`.
//!
//! Checks: no error; every read returns the value just written (no stale
//! read); the pool with a replica counts each read once, on the replica or
//! on the primary (`PoolStats`); the point-reads went to the replica, none
//! waited for it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::contenders::{Backend, CallError};
use crate::diesel_sync::db_error;
use crate::results::{ReplicaRow, RunResult};
use crate::workloads::{row, turns, Config};

/// How long the replica may take to get the schemas.
const CATCH_UP: Duration = Duration::from_secs(30);

/// `read_your_writes_timeout` of the pool with a replica (the default, set
/// here so that the table can name it).
pub const RYW_TIMEOUT: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Workload {
    PointRead,
    WriteThenRead,
}

impl Workload {
    pub const ALL: [Workload; 2] = [Workload::PointRead, Workload::WriteThenRead];

    pub fn label(self) -> &'static str {
        match self {
            Workload::PointRead => "point-read",
            Workload::WriteThenRead => "write, then read it",
        }
    }
}

/// Where the pool with a replica ran its reads: its [`db_txn::PoolStats`].
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Routed {
    pub replica_reads: u64,
    pub primary_fallbacks: u64,
    pub replica_waits: u64,
}

/// The pools of one backend: per workload, one without replicas and one
/// with a replica (`replica`).
trait Pools {
    fn backend(&self) -> Backend;
    /// A `read_only` point-read.
    fn read(&self, w: Workload, replica: bool, id: i64) -> Result<i64, db_txn::Error>;
    /// A read-modify-write: the value written.
    fn write(&self, w: Workload, replica: bool, id: i64) -> Result<i64, db_txn::Error>;
    /// Of the pool with a replica, so far.
    fn routed(&self, w: Workload) -> Routed;
}

/// Both workloads, the two pools taking turns after every call.
fn run(pools: &dyn Pools, cfg: &Config, out: &mut RunResult) {
    let name = pools.backend().label();
    for w in Workload::ALL {
        let mut stale = 0u64;
        // Reads made on the pool with a replica.
        let mut reads = 0u64;
        let mut call = |variant: usize, n: u64| -> Result<(), CallError> {
            let replica = variant == 1;
            let id = row(n);
            let written = match w {
                Workload::PointRead => None,
                Workload::WriteThenRead => Some(pools.write(w, replica, id).map_err(db_error)?),
            };
            reads += u64::from(replica);
            let read = pools.read(w, replica, id).map_err(db_error)?;
            stale += u64::from(written.is_some_and(|v| v != read));
            Ok(())
        };
        let samples = turns(2, cfg, &mut call);
        let what = format!("{name} replicas, {}", w.label());
        for (s, pool) in samples.iter().zip(["without replicas", "with a replica"]) {
            if s.errors > 0 {
                out.problems.push(format!(
                    "{what}, {pool}: {} errors, first: {}",
                    s.errors,
                    s.first_error.as_deref().unwrap_or("")
                ));
            }
        }
        if stale > 0 {
            out.problems.push(format!(
                "{what}: {stale} reads did not return the value just written"
            ));
        }
        let routed = pools.routed(w);
        if routed.replica_reads + routed.primary_fallbacks != reads {
            out.problems.push(format!(
                "{what}: {reads} reads on the pool with a replica, but it counted {} on the \
                 replica and {} on the primary",
                routed.replica_reads, routed.primary_fallbacks
            ));
        }
        if w == Workload::PointRead && (routed.replica_reads == 0 || routed.replica_waits > 0) {
            out.problems.push(format!(
                "{what}: a thread that never wrote must read on the replica without waiting: \
                 {} reads on the replica, {} waits",
                routed.replica_reads, routed.replica_waits
            ));
        }
        let bound = RYW_TIMEOUT.as_nanos() as u64;
        out.replicas.push(ReplicaRow {
            backend: pools.backend(),
            workload: w,
            timing: [samples[0].timing(), samples[1].timing()],
            routed,
            over_bound: samples[1].nanos.iter().filter(|t| **t >= bound).count() as u64,
        });
    }
}

/// `$module::Bench` on `$conn`, with the table and the read-modify-write of
/// the main workloads ([`crate::diesel_sync`]).
macro_rules! pools {
    ($module:ident, $conn:ty, $backend:expr) => {
        pub mod $module {
            use db_txn::Pool;
            use diesel::prelude::*;

            use super::{Routed, Workload, RYW_TIMEOUT};
            use crate::contenders::Backend;
            use crate::diesel_sync::$module::{create_schema, rmw_on};
            use crate::diesel_sync::{kv, POOL_SIZE};

            type Conn = $conn;

            #[db_txn::db_txn(pool = pool, read_only)]
            fn read(conn: &mut Conn, pool: &Pool<Conn>, id: i64) -> Result<i64, db_txn::Error> {
                Ok(kv::table.find(id).select(kv::v).get_result(conn)?)
            }

            /// Per workload: [without replicas, with a replica].
            pub struct Bench {
                pools: [[Pool<Conn>; 2]; 2],
            }

            impl Bench {
                /// `urls`: four empty databases on the primary (point-read
                /// without and with a replica, then write-then-read);
                /// `on_replica`: the same on the replica; `caught_up` waits
                /// until the replica has the schemas.
                pub fn new(
                    urls: [String; 4],
                    on_replica: [String; 4],
                    caught_up: &dyn Fn(),
                ) -> Self {
                    urls.iter().for_each(|url| create_schema(url));
                    caught_up();
                    let pool = |i: usize| {
                        let b = Pool::<Conn>::builder(urls[i].clone()).max_size(POOL_SIZE);
                        let b = match i % 2 {
                            1 => b
                                .replica(on_replica[i].clone())
                                .read_your_writes_timeout(RYW_TIMEOUT),
                            _ => b,
                        };
                        b.build()
                            .unwrap_or_else(|e| panic!("pool on {}: {e}", urls[i]))
                    };
                    Bench {
                        pools: [[pool(0), pool(1)], [pool(2), pool(3)]],
                    }
                }

                fn pool(&self, w: Workload, replica: bool) -> &Pool<Conn> {
                    &self.pools[w as usize][usize::from(replica)]
                }
            }

            impl super::Pools for Bench {
                fn backend(&self) -> Backend {
                    $backend
                }

                fn read(&self, w: Workload, replica: bool, id: i64) -> Result<i64, db_txn::Error> {
                    read(self.pool(w, replica), id)
                }

                fn write(&self, w: Workload, replica: bool, id: i64) -> Result<i64, db_txn::Error> {
                    rmw_on(self.pool(w, replica), id)
                }

                fn routed(&self, w: Workload) -> Routed {
                    let s = self.pool(w, true).stats();
                    Routed {
                        replica_reads: s.replica_reads,
                        primary_fallbacks: s.primary_fallbacks,
                        replica_waits: s.replica_waits,
                    }
                }
            }
        }
    };
}

pools!(mysql, diesel::MysqlConnection, Backend::MariaDb);
pools!(postgres, diesel::PgConnection, Backend::Postgres);

/// The names of the four databases on a primary (see `Bench::new`).
fn databases(tag: &str) -> [String; 4] {
    ["read_p", "read_r", "pair_p", "pair_r"].map(|n| format!("bench_{tag}_rep_{n}"))
}

fn fail<T>(e: db_txn_tests::KitError) -> T {
    panic!("{e}")
}

/// A MariaDB primary and its GTID replica, the rows of both workloads.
pub fn mariadb(cfg: &Config, out: &mut RunResult) {
    let primary = db_txn_tests::MariaDb::start_primary().unwrap_or_else(fail);
    let replica = primary.start_replica().unwrap_or_else(fail);
    let names = databases("m");
    let urls = names.each_ref().map(|n| primary.create_database(n));
    let on_replica = names.each_ref().map(|n| replica.url_for(n));
    let caught_up = || assert!(replica.wait_caught_up(&primary, CATCH_UP));
    run(&mysql::Bench::new(urls, on_replica, &caught_up), cfg, out);
}

/// A PostgreSQL primary and its streaming standby, the rows of both
/// workloads.
pub fn postgres(cfg: &Config, out: &mut RunResult) {
    let primary = db_txn_tests::Postgres::start().unwrap_or_else(fail);
    let replica = primary.start_standby().unwrap_or_else(fail);
    let names = databases("p");
    let urls = names.each_ref().map(|n| primary.create_database(n));
    let on_replica = names.each_ref().map(|n| replica.url_for(n));
    let caught_up = || assert!(replica.wait_caught_up(&primary, CATCH_UP));
    run(
        &postgres::Bench::new(urls, on_replica, &caught_up),
        cfg,
        out,
    );
}
