use db_txn::db_txn;
use diesel::SqliteConnection;

#[db_txn]
fn first<'a>(conn: &mut SqliteConnection, names: &'a [String]) -> Result<&'a str, db_txn::Error> {
    let _ = conn;
    Ok(names.first().map_or("", |name| name.as_str()))
}

#[db_txn]
fn longest<'a, 'b: 'a>(
    _conn: &'a mut SqliteConnection,
    a: &'a str,
    b: &'b str,
) -> Result<&'a str, db_txn::Error> {
    Ok(if a.len() >= b.len() { a } else { b })
}

struct Names(Vec<String>);

impl Names {
    #[db_txn]
    fn last(&self, _conn: &mut SqliteConnection) -> Result<&str, db_txn::Error> {
        Ok(self.0.last().map_or("", String::as_str))
    }
}

fn main() {
    let _ = first;
    let _ = longest;
    let _ = Names::last;
}
