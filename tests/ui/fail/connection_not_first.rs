use db_txn::db_txn;
use diesel::SqliteConnection;

#[db_txn]
fn find(id: i32, conn: &mut SqliteConnection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(id.into())
}

struct Repo;

impl Repo {
    #[db_txn]
    fn rename(&self, id: i32, name: &str, conn: &mut SqliteConnection) -> Result<(), db_txn::Error> {
        let _ = (conn, id, name);
        Ok(())
    }
}

fn main() {}
