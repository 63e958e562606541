//! A MariaDB/MySQL or PostgreSQL pool given another backend's URL says so
//! (issue 9), instead of diesel's "MySQL connection URLs must be in the
//! form ..." or libpq's `missing "=" after "mysql://..." in connection info
//! string`. Nothing is connected to: no server is needed.
#![cfg(any(feature = "mysql", feature = "postgres"))]

use std::time::Duration;

use db_txn::{Error, Pool, TxnConnection};

/// `url` is refused by `build()` and by every checkout of `build_lazy()`,
/// with a reason containing `says` and the password hidden.
fn refused<C: TxnConnection>(url: &str, says: &str) {
    let err = Pool::<C>::new(url).expect_err(url);
    let Error::BadUrl {
        backend, reason, ..
    } = &err
    else {
        panic!("{url}: {err:?}");
    };
    assert_eq!(*backend, C::BACKEND);
    assert!(reason.contains(says), "{url}: {reason}");
    assert!(!err.to_string().contains("secret"), "{err}");
    let lazy = Pool::<C>::builder(url)
        .checkout_timeout(Duration::from_secs(30))
        .build_lazy();
    let started = std::time::Instant::now();
    assert!(matches!(lazy.get(), Err(Error::BadUrl { .. })), "{url}");
    assert!(started.elapsed() < Duration::from_secs(10), "at once");
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_pool() {
    type C = diesel::MysqlConnection;
    refused::<C>("postgres://app:secret@db/app", "Pool<PgConnection>");
    refused::<C>("mariadb://app:secret@db/app", "write `mysql://` instead");
    refused::<C>("/var/lib/app.db", "Pool<SqliteConnection>");
    refused::<C>(
        "db.example.com",
        "`mysql://user:password@host:port/database`",
    );
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_pool() {
    type C = diesel::PgConnection;
    refused::<C>("mysql://app:secret@db/app", "Pool<MysqlConnection>");
    refused::<C>(":memory:", "Pool<SqliteConnection>");
    refused::<C>("not a url", "`key=value`");
}
