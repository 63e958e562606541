//! The main example, on embedded SQLite: `cargo run --example quickstart`.
//!
//! Annotated functions take no connection from their callers: each call
//! checks one out, runs in a transaction, commits on `Ok`, rolls back on `Err`
//! or panic, and gives the connection back.

use db_txn::{db_txn, Pool};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::SqliteConnection;

#[derive(Debug)]
enum AppError {
    Db(diesel::result::Error),
    Txn(db_txn::Error),
    Invalid(String),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Db(e) => write!(f, "database: {e}"),
            AppError::Txn(e) => write!(f, "{e}"),
            AppError::Invalid(why) => f.write_str(why),
        }
    }
}
impl std::error::Error for AppError {}

impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        AppError::Db(e)
    }
}
impl From<db_txn::Error> for AppError {
    fn from(e: db_txn::Error) -> Self {
        AppError::Txn(e)
    }
}

#[derive(QueryableByName, Debug)]
struct Account {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    balance: i64,
}

#[db_txn]
fn open_account(conn: &mut SqliteConnection, name: &str, balance: i64) -> Result<(), AppError> {
    diesel::sql_query("INSERT INTO accounts (name, balance) VALUES (?, ?)")
        .bind::<Text, _>(name)
        .bind::<BigInt, _>(balance)
        .execute(conn)?;
    Ok(())
}

#[db_txn]
fn withdraw(conn: &mut SqliteConnection, name: &str, amount: i64) -> Result<(), AppError> {
    diesel::sql_query("UPDATE accounts SET balance = balance - ? WHERE name = ?")
        .bind::<BigInt, _>(amount)
        .bind::<Text, _>(name)
        .execute(conn)?;
    let left: Account = diesel::sql_query("SELECT name, balance FROM accounts WHERE name = ?")
        .bind::<Text, _>(name)
        .get_result(conn)?;
    if left.balance < 0 {
        // The UPDATE above is rolled back with the transaction.
        return Err(AppError::Invalid(format!("{name} cannot go below zero")));
    }
    Ok(())
}

#[db_txn]
fn deposit(conn: &mut SqliteConnection, name: &str, amount: i64) -> Result<(), AppError> {
    diesel::sql_query("UPDATE accounts SET balance = balance + ? WHERE name = ?")
        .bind::<BigInt, _>(amount)
        .bind::<Text, _>(name)
        .execute(conn)?;
    Ok(())
}

/// Two annotated calls in one transaction: `lend` lets them join it.
#[db_txn]
fn transfer(
    conn: &mut SqliteConnection,
    from: &str,
    to: &str,
    amount: i64,
) -> Result<(), AppError> {
    db_txn::lend(conn, || {
        withdraw(from, amount)?;
        deposit(to, amount)
    })
}

#[db_txn(read_only)]
fn balances(conn: &mut SqliteConnection) -> Result<Vec<Account>, AppError> {
    Ok(diesel::sql_query("SELECT name, balance FROM accounts ORDER BY name").load(conn)?)
}

#[db_txn]
fn crash_midway(conn: &mut SqliteConnection) -> Result<(), AppError> {
    deposit_raw(conn, "alice", 1_000_000)?;
    panic!("the process is fine; this transaction is not");
}

fn deposit_raw(conn: &mut SqliteConnection, name: &str, amount: i64) -> QueryResult<usize> {
    diesel::sql_query("UPDATE accounts SET balance = balance + ? WHERE name = ?")
        .bind::<BigInt, _>(amount)
        .bind::<Text, _>(name)
        .execute(conn)
}

fn show(step: &str) -> Result<(), AppError> {
    let all = balances()?;
    let line: Vec<String> = all
        .iter()
        .map(|a| format!("{}={}", a.name, a.balance))
        .collect();
    println!("{step:<44} {}", line.join("  "));
    Ok(())
}

fn main() -> Result<(), AppError> {
    let dir = std::env::temp_dir().join(format!("db_txn-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| AppError::Invalid(e.to_string()))?;
    let path = dir.join("bank.db");
    let pool = Pool::<SqliteConnection>::builder(path.to_string_lossy())
        .max_size(4)
        .build()?;
    pool.get()?
        .batch_execute("CREATE TABLE accounts (name TEXT PRIMARY KEY, balance BIGINT NOT NULL)")?;
    db_txn::install(pool.clone());
    println!("db_txn quickstart: SQLite database {}", path.display());

    open_account("alice", 100)?;
    open_account("bob", 20)?;
    show("opened two accounts (2 commits):")?;

    transfer("alice", "bob", 30)?;
    show("transfer 30 alice -> bob (1 commit):")?;

    match transfer("bob", "alice", 500) {
        Err(AppError::Invalid(why)) => println!("transfer 500 bob -> alice refused: {why}"),
        Err(other) => return Err(other),
        Ok(()) => return Err(AppError::Invalid("an overdraft went through".into())),
    }
    show("after the refused transfer (rolled back):")?;

    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let panicked = std::panic::catch_unwind(crash_midway).is_err();
    std::panic::set_hook(hook);
    println!("a body that panicked after writing: panic reached the caller = {panicked}");
    show("after the panic (rolled back):")?;

    let s = pool.stats();
    println!(
        "pool: {} checkouts, {} connection(s) opened, {} closed, {} rollbacks, {} of {} idle",
        s.checkouts, s.opened, s.closed, s.rollbacks, s.idle_connections, s.connections
    );
    std::fs::remove_dir_all(&dir).map_err(|e| AppError::Invalid(e.to_string()))?;
    Ok(())
}
