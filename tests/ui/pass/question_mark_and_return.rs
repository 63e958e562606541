use db_txn::db_txn;
use diesel::{RunQueryDsl, SqliteConnection};

#[derive(Debug)]
enum AppError {
    Db(db_txn::Error),
    NotFound,
}

impl From<db_txn::Error> for AppError {
    fn from(error: db_txn::Error) -> Self {
        AppError::Db(error)
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(error: diesel::result::Error) -> Self {
        AppError::Db(error.into())
    }
}

type AppResult<T> = Result<T, AppError>;

#[db_txn]
fn check(conn: &mut SqliteConnection, id: i64) -> AppResult<usize> {
    if id < 0 {
        return Err(AppError::NotFound);
    }
    let rows = diesel::sql_query("SELECT 1").execute(conn)?;
    if rows == 0 {
        return Ok(0);
    }
    let more = diesel::sql_query("SELECT 2").execute(conn)?;
    Ok(rows + more)
}

fn main() {
    let _ = check;
}
