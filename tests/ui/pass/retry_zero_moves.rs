use db_txn::db_txn;
use diesel::SqliteConnection;

struct NewUser {
    name: String,
}

// With `retry = 0` the body runs at most once, so it may consume its arguments.
#[db_txn(retry = 0)]
fn insert(conn: &mut SqliteConnection, user: NewUser) -> Result<String, db_txn::Error> {
    let _ = conn;
    let NewUser { name } = user;
    Ok(name)
}

fn main() {
    let _ = insert;
}
