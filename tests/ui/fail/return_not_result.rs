use db_txn::db_txn;
use diesel::SqliteConnection;

#[db_txn]
fn count(conn: &mut SqliteConnection) -> Option<i64> {
    let _ = conn;
    Some(0)
}

fn main() {}
