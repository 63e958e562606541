use db_txn::db_txn;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

#[db_txn]
async fn inner(conn: &mut AsyncPgConnection) -> Result<(), db_txn::Error> {
    conn.batch_execute("SELECT 1").await?;
    Ok(())
}

#[db_txn]
async fn outer(conn: &mut AsyncPgConnection) -> Result<(), db_txn::Error> {
    // The lent connection is the joined calls' until the lend ends.
    db_txn::lend_async(conn, async || {
        conn.batch_execute("SELECT 1").await?;
        inner().await
    })
    .await
}

fn main() {}
