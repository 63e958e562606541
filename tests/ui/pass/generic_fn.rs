use db_txn::{db_txn, TxnConnection};
use diesel::SqliteConnection;

#[db_txn]
fn touch<C: TxnConnection>(conn: &mut C, sql: &str) -> Result<(), db_txn::Error> {
    Ok(conn.batch_execute(sql)?)
}

#[db_txn(retry = 2)]
fn label<C, T>(_conn: &mut C, value: T) -> Result<String, db_txn::Error>
where
    C: TxnConnection,
    T: std::fmt::Display,
{
    Ok(value.to_string())
}

fn main() {
    // `C` appears only in the removed parameter, so callers name it.
    let _ = touch::<SqliteConnection>;
    let _ = label::<SqliteConnection, u8>;
}
