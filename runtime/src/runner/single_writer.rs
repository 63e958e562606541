//! A transaction of its own that SQLite would make wait for a caller on
//! this thread is refused at once (issue 9; the rule is in
//! `backend/sqlite/lock.rs`).
//!
//! Checked twice: before checkout against callers on the same pool (so a
//! small pool does not first wait out its checkout timeout), and after
//! checkout against callers on the same database file through another pool.

use crate::pool::PooledConnection;
use crate::session;
use crate::{Error, Options, Pool, TxnConnection};

/// Before checkout: callers on the same pool.
pub(super) fn before_checkout<C: TxnConnection>(
    pool: &Pool<C>,
    options: &Options,
) -> Result<(), Error> {
    if !one_writer::<C>() || session::is_empty() {
        return Ok(());
    }
    check(pool.id(), None, options)
}

/// After checkout: callers on the same database, whatever their pool.
pub(super) fn after_checkout<C: TxnConnection>(
    pool: &Pool<C>,
    conn: &mut PooledConnection<C>,
    options: &Options,
) -> Result<(), Error> {
    if !one_writer::<C>() || session::is_empty() {
        return Ok(());
    }
    match conn.tracked().server.single_writer {
        Some(db) if db.database.is_some() => check(pool.id(), db.database, options),
        _ => Ok(()),
    }
}

/// Only SQLite takes one writer at a time; for the others this is compiled
/// out.
pub(super) fn one_writer<C: TxnConnection>() -> bool {
    C::BACKEND == crate::Backend::Sqlite
}

fn check(pool: u64, database: Option<u64>, options: &Options) -> Result<(), Error> {
    let writes = !options.read_only;
    match session::lock_holder(pool, database, |held| held.db.blocks(held.writes, writes)) {
        None => Ok(()),
        Some((holder, held)) => Err(Error::LockedByCaller {
            function: options.name,
            holder,
            caller_writes: held.writes,
            wal: held.db.wal,
        }),
    }
}
