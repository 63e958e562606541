// A crate that re-exports db_txn, or renames the dependency, points the
// generated code at it with `crate = "..."`.
mod my_db {
    pub use db_txn::*;
}

use diesel::SqliteConnection;

#[my_db::db_txn(crate = "crate::my_db")]
fn touch(_conn: &mut SqliteConnection) -> Result<(), my_db::Error> {
    Ok(())
}

#[my_db::db_txn(crate = "::db_txn", retry = 0)]
fn touch_absolute(_conn: &mut SqliteConnection) -> Result<(), my_db::Error> {
    Ok(())
}

fn main() {
    let _ = touch;
    let _ = touch_absolute;
}
