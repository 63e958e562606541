// An async pool has no read replicas yet: the setting does not exist, so it
// cannot be silently ignored.
use diesel_async::AsyncPgConnection;

fn main() {
    let _ = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@primary/app")
        .replica("postgres://app@replica-1/app");
}
