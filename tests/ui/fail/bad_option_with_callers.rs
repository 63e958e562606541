use db_txn::{db_txn, Pool};
use diesel::SqliteConnection;

// Only the option errors: the functions still lose their connection parameter, so their callers
// compile, and a bad `retry` adds no error about the body moving `name`.
#[db_txn(isolation = snapshot)]
fn count(conn: &mut SqliteConnection) -> Result<i64, db_txn::Error> {
    let _ = conn;
    Ok(0)
}

struct Repo {
    pool: Pool<SqliteConnection>,
}

impl Repo {
    #[db_txn(pool = self.pool, retry = "0")]
    fn insert(&self, conn: &mut SqliteConnection, name: String) -> Result<String, db_txn::Error> {
        let _ = conn;
        Ok(name)
    }
}

fn callers(repo: &Repo) -> Result<(), db_txn::Error> {
    count()?;
    repo.insert("ada".to_owned())?;
    Ok(())
}

fn main() {
    let _ = callers;
}
