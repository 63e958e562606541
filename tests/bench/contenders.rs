//! Who competes, on what: the backends, the contenders, the transactions, and
//! the [`Subject`] a backend's contenders are driven through.
//!
//! A contender is either a baseline (hand-written diesel + r2d2) or a measured
//! one (`#[db_txn]`); every table compares each measured contender with each
//! baseline of the same backend ([`pairs`]). To add a contender: a variant
//! here (label, key, [`Backend::contenders`]), and its calls in the
//! [`Subject`] that runs it (see [`crate::diesel_sync`]).

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Backend {
    Sqlite,
    MariaDb,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Sqlite, Backend::MariaDb, Backend::Postgres];

    /// The name in tables.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::MariaDb => "MariaDB",
            Backend::Postgres => "PostgreSQL",
        }
    }

    /// The name on the command line (`--only`) and in file names.
    pub fn key(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::MariaDb => "mariadb",
            Backend::Postgres => "postgres",
        }
    }

    pub fn parse(key: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.key() == key)
    }

    /// The contenders on this backend, in table order. SQLite has two BEGINs
    /// a user can write (diesel's `transaction` is `BEGIN`, i.e. DEFERRED;
    /// `immediate_transaction` takes the write lock up front); the servers
    /// have one.
    pub fn contenders(self) -> &'static [Contender] {
        use Contender::{DbTxn, DbTxnExplicit, Raw};
        const T: Begin = Begin::Transaction;
        const I: Begin = Begin::Immediate;
        match self {
            Backend::Sqlite => &[
                Raw(T, Ping::No),
                Raw(T, Ping::Yes),
                Raw(I, Ping::No),
                Raw(I, Ping::Yes),
                DbTxnExplicit,
                DbTxn,
            ],
            Backend::MariaDb | Backend::Postgres => {
                &[Raw(T, Ping::No), Raw(T, Ping::Yes), DbTxnExplicit, DbTxn]
            }
        }
    }
}

/// How a hand-written transaction begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Begin {
    /// `conn.transaction(..)`: `BEGIN` (on SQLite, DEFERRED).
    Transaction,
    /// `conn.immediate_transaction(..)` (SQLite only): `BEGIN IMMEDIATE`.
    Immediate,
}

/// Whether r2d2 runs its `SELECT 1` on every checkout (`test_on_check_out`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ping {
    No,
    Yes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Contender {
    /// Hand-written: `diesel::r2d2::Pool` and a diesel transaction.
    Raw(Begin, Ping),
    /// `#[db_txn]` with default settings on the installed pool.
    DbTxn,
    /// `#[db_txn(pool = pool)]`, default settings otherwise: the same call
    /// without the default pool's lookup, which takes a read lock and a
    /// reference to the pool (four locked instructions).
    DbTxnExplicit,
}

impl Contender {
    /// The name in tables and on the chart.
    pub fn label(self) -> &'static str {
        match self {
            Contender::Raw(Begin::Transaction, Ping::No) => "raw `transaction`, no ping",
            Contender::Raw(Begin::Transaction, Ping::Yes) => "raw `transaction` + ping",
            Contender::Raw(Begin::Immediate, Ping::No) => "raw `immediate_transaction`, no ping",
            Contender::Raw(Begin::Immediate, Ping::Yes) => "raw `immediate_transaction` + ping",
            Contender::DbTxn => "`#[db_txn]`",
            Contender::DbTxnExplicit => "`#[db_txn(pool = pool)]`",
        }
    }

    /// The name of its database or file, and of its callgrind variant.
    pub fn key(self) -> &'static str {
        match self {
            Contender::Raw(Begin::Transaction, Ping::No) => "raw_noping",
            Contender::Raw(Begin::Transaction, Ping::Yes) => "raw_ping",
            Contender::Raw(Begin::Immediate, Ping::No) => "raw_imm_noping",
            Contender::Raw(Begin::Immediate, Ping::Yes) => "raw_imm_ping",
            Contender::DbTxn => "db_txn",
            Contender::DbTxnExplicit => "db_txn_explicit",
        }
    }

    pub fn is_baseline(self) -> bool {
        matches!(self, Contender::Raw(..))
    }
}

/// (measured, baseline): every comparison the tables make among
/// `contenders`.
pub fn pairs(contenders: &[Contender]) -> Vec<(Contender, Contender)> {
    let measured = contenders.iter().filter(|c| !c.is_baseline());
    measured
        .flat_map(|m| {
            contenders
                .iter()
                .filter(|b| b.is_baseline())
                .map(move |b| (*m, *b))
        })
        .collect()
}

/// The transactions the workloads run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Txn {
    /// `SELECT v FROM kv WHERE id = ?`.
    PointRead,
    /// `SELECT v .. [FOR UPDATE]`, then `UPDATE kv SET v = v' WHERE id = ?`.
    Rmw,
}

impl Txn {
    /// The name on a child's command line and in file names.
    pub fn key(self) -> &'static str {
        match self {
            Txn::PointRead => "pr",
            Txn::Rmw => "rmw",
        }
    }

    pub fn parse(key: &str) -> Option<Txn> {
        [Txn::PointRead, Txn::Rmw]
            .into_iter()
            .find(|t| t.key() == key)
    }
}

/// An error a caller saw.
#[derive(Debug)]
pub struct CallError {
    /// The COMMIT was sent and the connection lost: outcome unknown.
    pub commit_unknown: bool,
    pub message: String,
}

/// One backend with its contenders set up. Contenders are named by their
/// index in [`Subject::contenders`], so that finding one costs the same for
/// all.
pub trait Subject: Sync {
    fn backend(&self) -> Backend;
    fn contenders(&self) -> &[Contender];
    /// One transaction by contender `who`, on row `id`.
    fn call(&self, who: usize, txn: Txn, id: i64) -> Result<(), CallError>;
    /// `SUM(v)` in `who`'s table: the number of read-modify-writes committed.
    fn committed(&self, who: usize) -> i64;
    /// Pings and skipped pings by the `#[db_txn]` pool so far.
    fn db_txn_pings(&self) -> (u64, u64);
}

/// The name of `who`'s database on a server, unique per run `tag`.
pub fn database_name(tag: &str, who: Contender) -> String {
    format!("bench_{tag}_{}", who.key())
}
