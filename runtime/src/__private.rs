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

#[cfg(feature = "async")]
pub use async_support::*;
#[cfg(not(feature = "async"))]
pub use no_async_support::*;

/// What `#[db_txn]` on an `async fn` calls (feature `async`).
#[cfg(feature = "async")]
mod async_support {
    use std::future::Future;

    use super::Options;
    use crate::{AsyncPool, AsyncTxnConnection, Error};

    pub use crate::asynk::runner::AsyncTarget;

    /// `pool = EXPR` on an `async fn` accepts an `AsyncPool<C>`, a
    /// `&AsyncPool<C>`, an `Arc<AsyncPool<C>>`, ...
    pub fn as_async_pool<C: AsyncTxnConnection>(
        p: &(impl AsyncPoolArg<C> + ?Sized),
    ) -> &AsyncPool<C> {
        p.pool()
    }

    /// What `pool = EXPR` may name on an `async fn`: anything that borrows as
    /// an `AsyncPool<C>`.
    #[diagnostic::on_unimplemented(
        message = "`pool = ...` on an `async fn` must be a `db_txn::AsyncPool<{C}>`, found `{Self}`",
        label = "not an `AsyncPool<{C}>`",
        note = "the function's connection parameter is `&mut {C}`, so its pool must be \
                an `AsyncPool<{C}>`, a `&AsyncPool<{C}>` or an `Arc<AsyncPool<{C}>>`"
    )]
    pub trait AsyncPoolArg<C: AsyncTxnConnection> {
        /// The pool.
        fn pool(&self) -> &AsyncPool<C>;
    }

    #[diagnostic::do_not_recommend]
    impl<C: AsyncTxnConnection, P: core::borrow::Borrow<AsyncPool<C>> + ?Sized> AsyncPoolArg<C> for P {
        fn pool(&self) -> &AsyncPool<C> {
            self.borrow()
        }
    }

    /// The body of a `#[db_txn]` `async fn` that may run more than once: a
    /// fresh copy of the body per attempt.
    ///
    /// A body that moves an argument out of a capture that cannot be cloned
    /// fails the `Clone` bound below, whose line rustc shows: the comment on
    /// it is the remedy, and `tests/async/ui/fail/moved_argument_with_retry.stderr`
    /// pins it.
    pub fn run_async<'a, C, T, E, F>(
        target: AsyncTarget<'a, C>,
        options: Options,
        body: F,
    ) -> impl Future<Output = Result<T, E>> + use<'a, C, T, E, F>
    where
        C: AsyncTxnConnection,
        E: From<Error>,
        F: AsyncFnOnce(&mut C) -> Result<T, E> + Clone, // may run twice: to move arguments, use #[db_txn(retry = 0)]
    {
        crate::asynk::runner::run(target, options, move || Some(body.clone()))
    }

    /// The body of a `#[db_txn(retry = 0)]` `async fn`, which may consume its
    /// arguments because it never runs twice.
    pub async fn run_async_once<C, T, E, F>(
        target: AsyncTarget<'_, C>,
        options: Options,
        body: F,
    ) -> Result<T, E>
    where
        C: AsyncTxnConnection,
        E: From<Error>,
        F: AsyncFnOnce(&mut C) -> Result<T, E>,
    {
        let mut body = Some(body);
        crate::asynk::runner::run(target, options.retry(0).retry_conflicts(0), move || {
            body.take()
        })
        .await
    }
}

/// Without the feature `async`, `#[db_txn]` on an `async fn` meets these,
/// whose only purpose is the error message.
#[cfg(not(feature = "async"))]
mod no_async_support {
    use std::marker::PhantomData;

    use super::Options;

    /// Implemented by nothing: an `async fn` needs the feature.
    #[diagnostic::on_unimplemented(
        message = "`#[db_txn]` on an `async fn` needs the `async-postgres` or `async-mysql` \
                   feature of db_txn",
        label = "db_txn was built without async support",
        note = "turn the feature on (`db_txn = {{ version = \"...\", features = \
                [\"async-postgres\"] }}`) and take `&mut AsyncPgConnection` or `&mut \
                AsyncMysqlConnection` from diesel-async; or make the function sync and call it \
                through `tokio::task::spawn_blocking`"
    )]
    pub trait AsyncSupport {}

    /// Stands for the async pool, which needs the feature.
    pub struct NoAsyncPool<C>(PhantomData<C>);

    /// Which pool an async call uses.
    pub enum AsyncTarget<'a, C> {
        /// The installed one.
        Default,
        /// `pool = ...`.
        Explicit(&'a NoAsyncPool<C>),
    }

    /// Never called: the call it feeds does not compile.
    pub fn as_async_pool<C, P: ?Sized>(_: &P) -> &NoAsyncPool<C> {
        unreachable!("db_txn: built without async support")
    }

    /// Never called: `C: AsyncSupport` holds for no type.
    pub fn run_async<C: AsyncSupport, T, E, F>(
        _: AsyncTarget<'_, C>,
        _: Options,
        _: F,
    ) -> std::future::Pending<Result<T, E>>
    where
        F: AsyncFnOnce(&mut C) -> Result<T, E>,
    {
        std::future::pending()
    }

    /// Never called: `C: AsyncSupport` holds for no type.
    pub fn run_async_once<C: AsyncSupport, T, E, F>(
        _: AsyncTarget<'_, C>,
        _: Options,
        _: F,
    ) -> std::future::Pending<Result<T, E>>
    where
        F: AsyncFnOnce(&mut C) -> Result<T, E>,
    {
        std::future::pending()
    }
}
