use db_txn::{db_txn, Pool};
use diesel::PgConnection;
use diesel_async::AsyncPgConnection;

#[db_txn(pool = pool)]
async fn count(conn: &mut AsyncPgConnection, pool: &Pool<PgConnection>) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

fn main() {}
