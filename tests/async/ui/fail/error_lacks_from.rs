use db_txn::db_txn;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};

#[derive(Debug)]
struct AppError;

impl From<diesel::result::Error> for AppError {
    fn from(_: diesel::result::Error) -> Self {
        AppError
    }
}

#[db_txn]
async fn count(conn: &mut AsyncPgConnection) -> Result<i64, AppError> {
    conn.batch_execute("SELECT 1").await?;
    Ok(0)
}

fn main() {}
