use db_txn::db_txn;

#[db_txn]
struct Repo {
    name: String,
}

fn main() {}
