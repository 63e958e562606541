use db_txn::db_txn;
use diesel_async::AsyncPgConnection;

#[db_txn]
fn count(conn: &mut AsyncPgConnection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

fn main() {}
