use db_txn::db_txn;
use diesel::SqliteConnection;

#[derive(Debug)]
struct AppError;

#[db_txn]
fn count(conn: &mut SqliteConnection) -> Result<i64, AppError> {
    let _ = conn;
    Ok(0)
}

fn main() {}
