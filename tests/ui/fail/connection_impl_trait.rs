use db_txn::db_txn;

#[db_txn]
fn count(conn: &mut impl diesel::Connection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

fn main() {}
