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

/// Runs the function body in a database transaction on a pooled connection.
///
/// See the `db_txn` crate for the documentation.
#[proc_macro_attribute]
pub fn db_txn(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::db_txn(args.into(), item.into()).into()
}

/// Folds errors into one so that all of them are reported: `errors.reduce(combine)`.
fn combine(mut errors: syn::Error, more: syn::Error) -> syn::Error {
    errors.combine(more);
    errors
}
