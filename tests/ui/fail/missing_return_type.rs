use db_txn::db_txn;
use diesel::SqliteConnection;

#[db_txn]
fn touch(conn: &mut SqliteConnection) {
    let _ = conn;
}

fn main() {}
