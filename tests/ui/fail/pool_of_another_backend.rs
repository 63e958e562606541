use db_txn::{db_txn, Pool};
use diesel::{PgConnection, SqliteConnection};

struct Repo {
    pool: Pool<PgConnection>,
}

impl Repo {
    #[db_txn(pool = self.pool)]
    fn count(&self, conn: &mut SqliteConnection) -> Result<i64, db_txn::Error> {
        let _ = conn;
        Ok(0)
    }
}

fn main() {}
