use std::sync::Arc;

use db_txn::{db_txn, Pool};
use diesel::{RunQueryDsl, SqliteConnection};

struct Repo {
    pool: Pool<SqliteConnection>,
}

impl Repo {
    /// Runs on the repository's own pool.
    #[db_txn(pool = self.pool, read_only)]
    pub fn count(&self, conn: &mut SqliteConnection) -> Result<usize, db_txn::Error> {
        Ok(diesel::sql_query("SELECT 1").execute(conn)?)
    }

    #[db_txn(pool = &self.pool, retry = 3)]
    fn rename(&mut self, conn: &mut SqliteConnection, name: &str) -> Result<(), db_txn::Error> {
        let _ = (conn, name);
        Ok(())
    }
}

struct Shared {
    pool: Arc<Pool<SqliteConnection>>,
}

impl Shared {
    #[db_txn(pool = self.pool)]
    fn ping(&self, conn: &mut SqliteConnection) -> Result<(), db_txn::Error> {
        let _ = conn;
        Ok(())
    }
}

fn main() {
    let _ = Repo::count;
    let _ = Repo::rename;
    let _ = Shared::ping;
}
