//! Which BEGIN `#[db_txn]` sends on SQLite, seen rather than assumed: it
//! decides which SQLite baseline runs the same SQL (the matching one, which
//! the goals judge against): raw `transaction` (`BEGIN`, deferred) or raw
//! `immediate_transaction` (`BEGIN IMMEDIATE`).
//!
//! A child process (the recorder is process-wide, so it must not run where
//! anything is timed) sets diesel's default instrumentation to a recorder,
//! which `db_txn`'s own instrumentation passes every event to, calls the
//! benchmark's very `point_read` and `rmw` functions a few times on a fresh
//! SQLite file, and prints the BEGIN of each one's last call. A watched
//! connection gets that BEGIN as diesel's batch and an unwatched one (the
//! timed contenders') as a prepared statement: the same SQL, chosen the
//! same way, so what the probe sees is what the timed calls send.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use diesel::connection::{Instrumentation, InstrumentationEvent};

use crate::contenders::{Backend, Begin, Contender, Ping, Txn};
use crate::diesel_sync::sqlite;

/// Calls of each function before the one whose BEGIN is reported (in case
/// `db_txn` learns from earlier calls).
const CALLS: usize = 5;

static STATEMENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn recorder() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(|event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            let mut all = STATEMENTS.lock().unwrap_or_else(|e| e.into_inner());
            all.push(query.to_string());
        }
    }))
}

/// The SQL of a statement as diesel's instrumentation shows it: a prepared
/// statement's text ends with its binds (`BEGIN -- binds: []`).
fn sql_of(statement: &str) -> &str {
    statement
        .split_once(" -- binds: ")
        .map_or(statement, |(sql, _)| sql)
        .trim()
}

/// `--smoke`: [`sql_of`] on statements as diesel shows them.
pub fn check_sql_of() -> Result<(), String> {
    for (shown, sql) in [
        ("BEGIN -- binds: []", "BEGIN"),
        ("BEGIN IMMEDIATE -- binds: []", "BEGIN IMMEDIATE"),
        (
            "BEGIN DEFERRED; PRAGMA query_only = ON",
            "BEGIN DEFERRED; PRAGMA query_only = ON",
        ),
        ("  BEGIN ", "BEGIN"),
    ] {
        if sql_of(shown) != sql {
            return Err(format!(
                "sql_of({shown:?}) = {:?}, not {sql:?}",
                sql_of(shown)
            ));
        }
    }
    Ok(())
}

fn is_begin(sql: &str) -> bool {
    let sql = sql.trim_start().to_ascii_uppercase();
    sql.starts_with("BEGIN") || sql.starts_with("START TRANSACTION")
}

/// The child: prints `<txn key>\t<BEGIN statement>` per transaction.
pub fn child(file: &str) -> Result<(), String> {
    diesel::connection::set_default_instrumentation(recorder).map_err(|e| e.to_string())?;
    sqlite::create_schema(file);
    db_txn::install(sqlite::db_txn_pool(file));
    for txn in [Txn::PointRead, Txn::Rmw] {
        let mut begin = None;
        for i in 0..CALLS {
            STATEMENTS.lock().unwrap_or_else(|e| e.into_inner()).clear();
            match txn {
                Txn::PointRead => sqlite::point_read(i as i64).map(drop),
                Txn::Rmw => sqlite::rmw(i as i64).map(drop),
            }
            .map_err(|e| format!("{txn:?}: {e}"))?;
            let seen = STATEMENTS.lock().unwrap_or_else(|e| e.into_inner());
            begin = seen.iter().find(|s| is_begin(s)).cloned();
        }
        let begin = begin.ok_or_else(|| format!("{txn:?}: no BEGIN seen"))?;
        println!("{}\t{}", txn.key(), sql_of(&begin));
    }
    Ok(())
}

/// What `#[db_txn]` sent on SQLite, per transaction.
#[derive(Debug, Clone, Default)]
pub struct Begins {
    pub point_read: Option<String>,
    pub rmw: Option<String>,
}

impl Begins {
    /// Runs the child on a new file in `dir`.
    pub fn probe(dir: &Path) -> Result<Begins, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let file = dir.join("begin_probe.db");
        let out = Command::new(exe)
            .arg("--begin-probe")
            .arg(&file)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut begins = Begins::default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            match line.split_once('\t') {
                Some(("pr", sql)) => begins.point_read = Some(sql.into()),
                Some(("rmw", sql)) => begins.rmw = Some(sql.into()),
                _ => {}
            }
        }
        Ok(begins)
    }

    pub fn get(&self, txn: Txn) -> Option<&str> {
        match txn {
            Txn::PointRead => self.point_read.as_deref(),
            Txn::Rmw => self.rmw.as_deref(),
        }
    }

    /// The baseline that begins `txn` on `backend` as `#[db_txn]` does, with
    /// or without r2d2's ping. SQLite without a probe: `immediate_transaction`.
    pub fn matching(&self, backend: Backend, txn: Txn, ping: Ping) -> Contender {
        let immediate = |sql: &str| {
            let sql = sql.to_ascii_uppercase();
            sql.contains("IMMEDIATE") || sql.contains("EXCLUSIVE")
        };
        let sqlite_immediate = self.get(txn).is_none_or(immediate);
        let begin = if backend == Backend::Sqlite && sqlite_immediate {
            Begin::Immediate
        } else {
            Begin::Transaction
        };
        Contender::Raw(begin, ping)
    }
}
