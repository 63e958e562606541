use db_txn::db_txn;
use diesel::SqliteConnection;

#[db_txn(timeout = "5h")]
fn count(conn: &mut SqliteConnection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

#[db_txn(timeout = "0s")]
fn zero(conn: &mut SqliteConnection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

fn main() {}
