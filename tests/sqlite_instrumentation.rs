//! What diesel instrumentation of the user's own sees of an annotated call
//! on SQLite: diesel's transaction events and its BEGIN and COMMIT batches,
//! as on any diesel connection. (Without such instrumentation, the runner
//! sends SQLite's BEGIN and COMMIT as statements prepared once per
//! connection, which diesel's events would not describe.) One test: diesel's
//! default instrumentation is process-wide.
#![cfg(feature = "sqlite")]

use std::sync::Mutex;

use db_txn::{db_txn, Error, Pool};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use diesel::SqliteConnection;

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn recorder() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(|event: InstrumentationEvent<'_>| {
        let line = match event {
            InstrumentationEvent::BeginTransaction { depth, .. } => format!("begin {depth}"),
            InstrumentationEvent::CommitTransaction { depth, .. } => format!("commit {depth}"),
            InstrumentationEvent::StartQuery { query, .. } => format!("sql {query}"),
            _ => return,
        };
        SEEN.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }))
}

#[db_txn(pool = pool)]
fn write(conn: &mut SqliteConnection, pool: &Pool<SqliteConnection>) -> Result<usize, Error> {
    Ok(diesel::sql_query("INSERT INTO t VALUES (1)").execute(conn)?)
}

fn seen() -> Vec<String> {
    std::mem::take(&mut *SEEN.lock().unwrap_or_else(|e| e.into_inner()))
}

#[test]
fn user_instrumentation_sees_diesels_events_and_batches() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("i.db");
    let url = url.to_str().unwrap();
    let mut conn = SqliteConnection::establish(url).unwrap();
    diesel::sql_query("CREATE TABLE t (x INTEGER)")
        .execute(&mut conn)
        .unwrap();
    let plain = Pool::<SqliteConnection>::new(url).unwrap();
    write(&plain).unwrap();

    diesel::connection::set_default_instrumentation(recorder).unwrap();
    seen();
    // A connection opened before the instrumentation was set has none.
    write(&plain).unwrap();
    assert_eq!(
        seen(),
        Vec::<String>::new(),
        "the old connection was watched"
    );

    let watched = Pool::<SqliteConnection>::new(url).unwrap();
    for _ in 0..3 {
        write(&watched).unwrap();
        let events = seen();
        let from_begin = events
            .iter()
            .skip_while(|e| *e != "begin 1")
            .cloned()
            .collect::<Vec<_>>();
        assert_eq!(
            from_begin,
            [
                "begin 1",
                "sql BEGIN",
                "sql INSERT INTO t VALUES (1) -- binds: []",
                "commit 1",
                "sql COMMIT"
            ],
            "all events: {events:?}"
        );
    }
    let rows: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM t)",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(rows, 5, "every call committed");
}
