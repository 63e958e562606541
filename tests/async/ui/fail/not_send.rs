use std::rc::Rc;

use db_txn::db_txn;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

#[db_txn]
async fn count(conn: &mut AsyncPgConnection) -> Result<usize, db_txn::Error> {
    let shared = Rc::new(1);
    conn.batch_execute("SELECT 1").await?;
    Ok(*shared)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().build().unwrap();
    runtime.spawn(count());
}
