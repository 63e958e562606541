use db_txn::db_txn;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

struct Token(u32);

fn spend(token: Token) -> u32 {
    token.0
}

#[db_txn]
async fn consume(conn: &mut AsyncPgConnection, token: Token) -> Result<u32, db_txn::Error> {
    conn.batch_execute("SELECT 1").await?;
    Ok(spend(token))
}

fn main() {}
