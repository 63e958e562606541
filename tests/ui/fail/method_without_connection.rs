use db_txn::db_txn;

struct Repo;

impl Repo {
    #[db_txn]
    fn count(&self) -> Result<i64, db_txn::Error> {
        Ok(0)
    }
}

fn main() {}
