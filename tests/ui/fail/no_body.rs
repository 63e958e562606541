use db_txn::db_txn;
use diesel::SqliteConnection;

trait Repo {
    #[db_txn]
    fn count(&self, conn: &mut SqliteConnection) -> Result<i64, db_txn::Error>;
}

fn main() {}
