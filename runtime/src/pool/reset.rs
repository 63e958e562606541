//! A raw user's connection goes back to the pool without a transaction
//! (issue 9).
//!
//! Code that took a connection with [`Pool::get`](crate::Pool::get) may
//! leave a transaction open: `batch_execute("BEGIN; INSERT ...")` and an
//! early return, or diesel's `begin_test_transaction`. The next user got it
//! as it was: on PostgreSQL the next `#[db_txn]` call's COMMIT committed the
//! abandoned row; MariaDB commits it at the next `START TRANSACTION`; SQLite
//! fails that BEGIN. Calls of `#[db_txn]` end their own transactions, so
//! this runs for raw connections only, and sends nothing when no statement
//! ran (the instrumentation counts them).

use diesel::connection::{AnsiTransactionManager, TransactionManager};

use super::tracked::Tracked;
use crate::backend::{idle_rollback, Dialect, TxnConnection};

type Tm = AnsiTransactionManager;

/// Roll back what a raw user left open on `t`, or mark it to be closed.
/// `used`: a statement ran since the checkout.
pub(super) fn after_raw_use<C: TxnConnection>(t: &mut Tracked<C>, used: bool) {
    if t.flags.unusable() {
        return; // Closed on return anyway.
    }
    let depth = match Tm::transaction_manager_status_mut(&mut t.conn).transaction_depth() {
        Ok(depth) => depth,
        // diesel's manager is in error: r2d2's `has_broken` closes it.
        Err(_) => return,
    };
    if let Some(depth) = depth {
        // Through diesel's manager, which must end at depth 0 too.
        tracing::debug!(
            target: "db_txn",
            depth = depth.get(),
            "connection returned inside a diesel transaction: rolled back"
        );
        for _ in 0..depth.get() {
            if Tm::rollback_transaction(&mut t.conn).is_err() {
                t.flags.set_discard();
                return;
            }
        }
        return;
    }
    if !used {
        return;
    }
    let reset = t
        .conn
        .batch_execute(<C::Dialect as Dialect>::RAW_RESET_SQL)
        // A transaction in error refuses anything but ROLLBACK.
        .or_else(|_| t.conn.batch_execute("ROLLBACK"));
    match reset {
        Ok(()) => {}
        Err(e) if idle_rollback::<C>(&e) => {}
        Err(e) => {
            tracing::debug!(
                target: "db_txn",
                error = %e,
                "ROLLBACK of a returned connection failed: closed instead of reused"
            );
            t.flags.set_discard();
        }
    }
    // The ROLLBACK itself is not the next user's.
    t.flags.take_used();
}
