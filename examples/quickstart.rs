//! The main example, on embedded SQLite: `cargo run --example quickstart`.
//!
//! It is the crate docs' "Getting started" as a program: a schema with
//! `table!` and derives, an error type with thiserror, `#[db_txn]`
//! functions, a pool built and installed at start-up, and calls. Annotated
//! functions take no connection from their callers: each call checks one
//! out, runs in a transaction, commits on `Ok`, rolls back on `Err` or panic,
//! and gives the connection back.

use db_txn::{db_txn, Pool};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::SqliteConnection;

/// What `diesel print-schema` writes into `src/schema.rs`.
mod schema {
    diesel::table! {
        accounts (name) {
            name -> Text,
            balance -> BigInt,
        }
    }
}

use schema::accounts;

/// A row of `accounts`.
#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = accounts)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
struct Account {
    name: String,
    balance: i64,
}

/// The application's errors. `#[db_txn]` needs `From<db_txn::Error>`; `?` on
/// diesel's results needs `From<diesel::result::Error>`.
#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error(transparent)]
    Db(#[from] db_txn::Error),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("{0} cannot go below zero")]
    Overdraft(String),
}

#[db_txn]
fn open_account(conn: &mut SqliteConnection, name: &str, balance: i64) -> Result<(), AppError> {
    diesel::insert_into(accounts::table)
        .values(Account {
            name: name.to_owned(),
            balance,
        })
        .execute(conn)?;
    Ok(())
}

#[db_txn]
fn withdraw(conn: &mut SqliteConnection, name: &str, amount: i64) -> Result<(), AppError> {
    diesel::update(accounts::table.find(name))
        .set(accounts::balance.eq(accounts::balance - amount))
        .execute(conn)?;
    let left: i64 = accounts::table
        .find(name)
        .select(accounts::balance)
        .first(conn)?;
    if left < 0 {
        // The UPDATE above is rolled back with the transaction.
        return Err(AppError::Overdraft(name.to_owned()));
    }
    Ok(())
}

#[db_txn]
fn deposit(conn: &mut SqliteConnection, name: &str, amount: i64) -> Result<(), AppError> {
    add_to_balance(conn, name, amount)?;
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
    Ok(accounts::table
        .order(accounts::name)
        .select(Account::as_select())
        .load(conn)?)
}

#[db_txn]
fn crash_midway(conn: &mut SqliteConnection) -> Result<(), AppError> {
    add_to_balance(conn, "alice", 1_000_000)?;
    panic!("the process is fine; this transaction is not");
}

/// Plain diesel, on the caller's connection.
fn add_to_balance(conn: &mut SqliteConnection, name: &str, amount: i64) -> QueryResult<usize> {
    diesel::update(accounts::table.find(name))
        .set(accounts::balance.eq(accounts::balance + amount))
        .execute(conn)
}

fn show(step: &str) -> Result<(), AppError> {
    let line: Vec<String> = balances()?
        .iter()
        .map(|a| format!("{}={}", a.name, a.balance))
        .collect();
    println!("{step:<44} {}", line.join("  "));
    Ok(())
}

/// The schema. An application runs its migrations here instead, on a
/// connection of the pool before installing it (crate docs: "Migrations").
const SCHEMA: &str = "CREATE TABLE accounts (name TEXT PRIMARY KEY, balance BIGINT NOT NULL)";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("db_txn-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bank.db");
    let pool = Pool::<SqliteConnection>::builder(path.to_string_lossy())
        .max_size(4)
        .build()?;
    pool.get()?.batch_execute(SCHEMA)?;
    db_txn::install(pool.clone());
    println!("db_txn quickstart: SQLite database {}", path.display());

    open_account("alice", 100)?;
    open_account("bob", 20)?;
    show("opened two accounts (2 commits):")?;

    transfer("alice", "bob", 30)?;
    show("transfer 30 alice -> bob (1 commit):")?;

    match transfer("bob", "alice", 500) {
        Err(AppError::Overdraft(who)) => {
            println!("transfer 500 bob -> alice refused: {who} cannot go below zero")
        }
        Err(other) => return Err(other.into()),
        Ok(()) => return Err("an overdraft went through".into()),
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
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
