use db_txn::{db_txn, Pool};
use diesel::SqliteConnection;

static POOL: std::sync::OnceLock<Pool<SqliteConnection>> = std::sync::OnceLock::new();

#[db_txn(
    pool = POOL.get().expect("pool"),
    retry = 2,
    retry_conflicts = 3,
    isolation = serializable,
    read_only,
    requires_new,
    timeout = "500ms",
    resolve_commit = false
)]
fn report(_conn: &mut SqliteConnection) -> Result<(), db_txn::Error> {
    Ok(())
}

#[db_txn(isolation = read_committed, timeout = "2m", resolve_commit)]
fn read_committed(_conn: &mut SqliteConnection) -> Result<(), db_txn::Error> {
    Ok(())
}

#[db_txn(
    isolation = repeatable_read,
    retry = 0,
    retry_conflicts = 0,
    timeout = "5s",
    resolve_commit = false
)]
fn repeatable_read(_conn: &mut SqliteConnection) -> Result<(), db_txn::Error> {
    Ok(())
}

fn main() {
    let _ = report;
    let _ = read_committed;
    let _ = repeatable_read;
}
