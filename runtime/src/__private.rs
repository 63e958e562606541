//! Support for the code `#[db_txn]` generates. Not a stable API: nothing here
//! follows semver, and nothing here is meant to be named by hand.

pub use crate::options::{Isolation, Options};
pub use crate::runner::Target;
pub use crate::Pool;

use crate::{Error, TxnConnection};

/// `pool = EXPR` accepts a `Pool<C>`, a `&Pool<C>`, an `Arc<Pool<C>>`, ...
pub fn as_pool<C: TxnConnection>(p: &(impl PoolArg<C> + ?Sized)) -> &Pool<C> {
    p.pool()
}

/// What `pool = EXPR` may name: anything that borrows as a `Pool<C>`.
#[diagnostic::on_unimplemented(
    message = "`pool = ...` must be a `db_txn::Pool<{C}>`, found `{Self}`",
    label = "not a `Pool<{C}>`",
    note = "the function's connection parameter is `&mut {C}`, so its pool must be \
            a `Pool<{C}>`, a `&Pool<{C}>` or an `Arc<Pool<{C}>>`"
)]
pub trait PoolArg<C: TxnConnection> {
    /// The pool.
    fn pool(&self) -> &Pool<C>;
}

// Without this, rustc reports the unmet `Borrow` bound instead of the message above.
#[diagnostic::do_not_recommend]
impl<C: TxnConnection, P: core::borrow::Borrow<Pool<C>> + ?Sized> PoolArg<C> for P {
    fn pool(&self) -> &Pool<C> {
        self.borrow()
    }
}

/// The body of a `#[db_txn]` function that may run more than once.
///
/// A body that moves an argument out gets rustc's E0507, whose help shows the line of the `FnMut`
/// bound: the comment on it is the remedy, and `tests/ui/fail/moved_argument_with_retry.stderr`
/// pins it.
pub fn run<C, T, E, F>(target: Target<'_, C>, options: Options, body: F) -> Result<T, E>
where
    C: TxnConnection,
    E: From<Error>,
    F: FnMut(&mut C) -> Result<T, E>, // may run twice: to move arguments, use #[db_txn(retry = 0)]
{
    crate::runner::run(target, options, body)
}

/// The body of a `#[db_txn(retry = 0)]` function, which may consume its
/// arguments because it never runs twice.
pub fn run_once<C, T, E, F>(target: Target<'_, C>, options: Options, body: F) -> Result<T, E>
where
    C: TxnConnection,
    E: From<Error>,
    F: FnOnce(&mut C) -> Result<T, E>,
{
    let mut body = Some(body);
    crate::runner::run(
        target,
        options.retry(0).retry_conflicts(0),
        move |conn| match body.take() {
            Some(body) => body(conn),
            // Unreachable: with both retries at 0 the runner calls the body once.
            None => unreachable!("db_txn: a retry = 0 body ran twice"),
        },
    )
}
