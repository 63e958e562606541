use db_txn::db_txn;
use diesel::SqliteConnection;

// The body may run twice, so it cannot move `name` out; `retry = 0` lifts this.
#[db_txn]
fn insert(conn: &mut SqliteConnection, name: String) -> Result<String, db_txn::Error> {
    let _ = conn;
    Ok(name)
}

fn main() {}
