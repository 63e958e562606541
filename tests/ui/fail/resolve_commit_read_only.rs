use db_txn::db_txn;
use diesel::SqliteConnection;

#[db_txn(read_only, resolve_commit)]
fn count(conn: &mut SqliteConnection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

fn main() {
    // The function is still emitted, without its connection parameter.
    let _ = count();
}
