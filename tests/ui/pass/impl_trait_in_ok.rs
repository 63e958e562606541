use db_txn::db_txn;
use diesel::SqliteConnection;

#[db_txn]
fn ids(conn: &mut SqliteConnection, n: u32) -> Result<impl Iterator<Item = u32>, db_txn::Error> {
    let _ = conn;
    Ok(0..n)
}

#[db_txn(retry = 0)]
fn names(
    _conn: &mut SqliteConnection,
    names: Vec<String>,
) -> Result<(impl Iterator<Item = String>, Box<dyn std::fmt::Debug>), db_txn::Error> {
    Ok((names.into_iter(), Box::new(())))
}

fn main() {
    let _ = ids;
    let _ = names;
}
