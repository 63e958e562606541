//! The default pool of a connection type: one test, because the registry is
//! process-wide and the steps depend on each other.
#![cfg(feature = "sqlite")]

use db_txn::{db_txn, Error, Pool};
use diesel::prelude::*;
use diesel::SqliteConnection;

#[db_txn]
fn answer(conn: &mut SqliteConnection) -> Result<i32, Error> {
    let n =
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("42")).get_result(conn)?;
    Ok(n)
}

#[test]
fn no_pool_then_installed_then_removed() {
    let err = answer().unwrap_err();
    assert!(matches!(err, Error::NoPool { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("SqliteConnection") && msg.contains("registry::answer"),
        "{msg}"
    );
    assert!(msg.contains("db_txn::install"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::<SqliteConnection>::new(dir.path().join("r.db").to_str().unwrap()).unwrap();
    assert!(db_txn::install(pool.clone()).is_none());
    // Every thread sees the installed pool.
    let from_threads: Vec<i32> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| answer().unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(from_threads, [42; 4]);
    assert_eq!(
        pool.stats().checkouts,
        4,
        "the calls used the installed pool"
    );

    let replaced = db_txn::install(pool.clone()).expect("the first pool comes back");
    assert_eq!(replaced.stats().checkouts, 4);
    assert!(db_txn::uninstall::<SqliteConnection>().is_some());
    assert!(matches!(answer(), Err(Error::NoPool { .. })));
}
