use db_txn::db_txn;
use diesel::SqliteConnection;

#[db_txn(resolve_commit = "yes")]
fn pay(conn: &mut SqliteConnection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

fn main() {}
