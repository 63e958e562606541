// A body that moves an argument out: with `retry = 0` it runs once and may
// consume anything; with retries, each attempt gets a clone of what the
// body captures, so a `Clone` argument may be moved too.
use db_txn::db_txn;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

struct Token(u32);

#[db_txn(retry = 0)]
async fn consume(conn: &mut AsyncPgConnection, token: Token) -> Result<u32, db_txn::Error> {
    conn.batch_execute("SELECT 1").await?;
    let Token(n) = token;
    Ok(n)
}

#[db_txn(retry = 2)]
async fn label(conn: &mut AsyncPgConnection, name: String) -> Result<String, db_txn::Error> {
    conn.batch_execute("SELECT 1").await?;
    Ok(name)
}

#[db_txn]
async fn nested(conn: &mut AsyncPgConnection) -> Result<String, db_txn::Error> {
    db_txn::lend_async(conn, async || {
        let n = consume(Token(1)).await?;
        label(format!("{n}")).await
    })
    .await
}

fn main() {
    let _ = (consume(Token(1)), label("x".into()), nested());
}
