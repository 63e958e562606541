use db_txn::db_txn;

#[db_txn]
fn count() -> Result<i64, db_txn::Error> {
    Ok(0)
}

fn main() {}
