//! The `#[db_txn]` attribute.
//!
//! Use it through the [`db_txn`](https://docs.rs/db_txn) crate, which re-exports it and documents
//! it. This crate only rewrites the function: it removes the connection parameter and passes the
//! body, as a closure taking that connection, to `db_txn::__private::run`:
//!
//! ```text
//! #[db_txn(retry = 2)]
//! pub fn find(conn: &mut PgConnection, id: i32) -> Result<User, AppError> { body }
//! ```
//!
//! becomes
//!
//! ```text
//! pub fn find(id: i32) -> Result<User, AppError> {
//!     ::db_txn::__private::run::<PgConnection, _, _, _>(
//!         ::db_txn::__private::Target::Default,
//!         ::db_txn::__private::Options::new(::core::concat!(::core::module_path!(), "::", "find"))
//!             .retry(2),
//!         |conn: &mut PgConnection| -> Result<User, AppError> { body },
//!     )
//! }
//! ```
//!
//! Stages: `item` parses the function, `options` the attribute arguments, `signature` checks
//! the function's signature, `expand` writes the result.

mod duration;
mod expand;
mod item;
mod options;
mod signature;
#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Each call of the function checks a connection out of the pool, begins a transaction, runs the
/// body, commits on `Ok`, rolls back on `Err` or panic, runs the body again if the connection was
/// lost before COMMIT was sent, and always releases the connection.
///
/// The function takes the connection first (after `self`), `conn: &mut C` for a diesel
/// connection type `C`, and returns a `Result` whose error type implements
/// `From<db_txn::Error>`. Its callers leave the connection out. On an `async fn`, `C` is a
/// diesel-async connection (`AsyncPgConnection`, `AsyncMysqlConnection`; db_txn's features
/// `async-postgres`, `async-mysql`), the pool an `AsyncPool<C>`, and the body becomes an async
/// closure handed to `run_async`, whose future the function awaits.
///
/// | Option | Values | Default |
/// |---|---|---|
/// | `pool = EXPR` | a `Pool<C>`, `&Pool<C>` or `Arc<Pool<C>>`, evaluated at each call | the one installed for `C` |
/// | `retry = N` | times the body runs again after a lost connection; `0` lets it move arguments | `1` |
/// | `retry_conflicts = N` | times it runs again after a deadlock or serialization failure | `0` |
/// | `isolation = L` | `read_committed`, `repeatable_read`, `serializable` (SQLite: the last) | the server's |
/// | `read_only` | no value: a read-only transaction | read-write |
/// | `requires_new` | no value: its own connection and transaction, even inside a lent one | join a lent one |
/// | `timeout = "5s"` | statement timeout in `ms`, `s` or `m` (not on SQLite) | none |
/// | `resolve_commit` | alone or `= true`/`= false`: find out what became of a COMMIT lost with its connection (`fn` and `async fn`) | the pool's (off) |
/// | `crate = "path"` | where the generated code finds `db_txn` | `"::db_txn"` |
///
/// `#[db_txn(retry = 2)] fn find(conn: &mut PgConnection, id: i32) -> Result<User, AppError>`
/// becomes:
///
/// ```text
/// fn find(id: i32) -> Result<User, AppError> {
///     ::db_txn::__private::run::<PgConnection, _, _, _>(
///         ::db_txn::__private::Target::Default, // pool = EXPR: Target::Explicit(..)
///         ::db_txn::__private::Options::new(concat!(module_path!(), "::", "find")).retry(2),
///         |conn: &mut PgConnection| -> Result<User, AppError> { /* body */ },
///     ) // retry = 0: run_once, whose body is an FnOnce
/// }
/// ```
///
/// and `#[db_txn] async fn find(conn: &mut AsyncPgConnection, id: i32) -> Result<User, AppError>`:
///
/// ```text
/// async fn find(id: i32) -> Result<User, AppError> {
///     ::db_txn::__private::run_async::<AsyncPgConnection, _, _, _>(
///         ::db_txn::__private::AsyncTarget::Default,
///         ::db_txn::__private::Options::new(concat!(module_path!(), "::", "find")),
///         async |conn: &mut AsyncPgConnection| -> Result<User, AppError> { /* body */ },
///     )
///     .await // a clone of the async closure per attempt; retry = 0: run_async_once
/// }
/// ```
///
/// Each option has a runnable example in the `db_txn` crate's documentation.
#[proc_macro_attribute]
pub fn db_txn(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::db_txn(args.into(), item.into()).into()
}

/// Folds errors into one so that all of them are reported: `errors.reduce(combine)`.
fn combine(mut errors: syn::Error, more: syn::Error) -> syn::Error {
    errors.combine(more);
    errors
}
