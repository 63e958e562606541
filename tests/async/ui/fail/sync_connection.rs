use db_txn::db_txn;
use diesel::PgConnection;

#[db_txn]
async fn count(conn: &mut PgConnection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

fn main() {}
