//! Cancellation of the async form: a call's future dropped at each of its
//! await points in turn, then the checks that nothing was left behind.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use db_txn::{db_txn, AsyncPool, AsyncTxnConnection, PoolStats};

use crate::ledger::{Ledger, LedgerError};
use crate::server::eventually;
use crate::AsyncServer;

/// Polls `fut` at most `n` times, then drops it; its output if it finished.
pub async fn poll_then_drop<F: Future>(fut: F, n: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut polls = 0;
    std::future::poll_fn(move |cx| {
        polls += 1;
        match fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending if polls >= n => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// A transfer with an await point between its statements at which the
/// transaction is idle (as a body awaiting another service would be).
#[db_txn(pool = pool)]
pub async fn pausing_transfer<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    op: &str,
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 7)"
    ))
    .await?;
    tokio::task::yield_now().await;
    conn.batch_execute("UPDATE accounts SET balance = balance - 7 WHERE id = 0")
        .await?;
    conn.batch_execute("UPDATE accounts SET balance = balance + 7 WHERE id = 1")
        .await?;
    Ok(())
}

/// The pool settles (every connection idle, as many on the server, none of
/// them in a transaction or running a statement).
pub async fn assert_settled<S: AsyncServer>(l: &Ledger<'_, S>, what: &str) {
    let mut last = String::new();
    let settled = eventually(Duration::from_secs(10), || {
        let s = l.pool.stats();
        let server = l.server.connection_count(&l.database);
        let open = l.server.open_transactions(&l.database);
        last = format!("{server} on the server, {open} in a transaction or busy, pool {s:?}");
        s.connections == s.idle_connections && server == i64::from(s.connections) && open == 0
    })
    .await;
    assert!(settled, "{what}: not settled: {last}");
}

/// What the sweep saw.
#[derive(Debug, Default)]
pub struct Sweep {
    /// Drops that left the connection in a transaction, between statements
    /// (rolled back in the background and returned).
    pub rolled_back_idle: u32,
    /// Drops with a statement in flight (connection closed).
    pub closed_mid_statement: u32,
    /// Drops while COMMIT was in flight.
    pub commit_unknown: u32,
    /// Polls the call needed to finish.
    pub polls_to_finish: usize,
}

/// Drop a `pausing_transfer` after 1, 2, 3, ... polls until it finishes;
/// after each drop, the pool settles with no transaction left open, the
/// operation is applied at most once and only if COMMIT was in flight, and
/// the ledger is consistent.
pub async fn sweep<S: AsyncServer>(l: &mut Ledger<'_, S>) -> Sweep {
    let mut sweep = Sweep::default();
    for n in 1..200 {
        let op = format!("cancel-{n}");
        let before: PoolStats = l.pool.stats();
        let out = poll_then_drop(pausing_transfer(&l.pool, &op), n).await;
        assert_settled(l, &format!("dropped after {n} polls")).await;
        let after = l.pool.stats();
        let applied = l.times_applied(&op);
        match out {
            Some(result) => {
                result.unwrap_or_else(|e| panic!("{op}: {e:?}"));
                assert_eq!(applied, 1, "{op} finished");
                l.acknowledge(&op);
                sweep.polls_to_finish = n;
                break;
            }
            None => {
                let unknown = after.commit_unknowns - before.commit_unknowns;
                eprintln!(
                    "dropped after {n} polls: applied {applied}, closed +{}, rollbacks +{}, \
                     commit_unknowns +{unknown}",
                    after.closed - before.closed,
                    after.rollbacks - before.rollbacks
                );
                assert!(applied <= 1, "{op} applied {applied} times");
                assert!(
                    applied == 0 || unknown == 1,
                    "{op} committed although its future was dropped before COMMIT: {after:?}"
                );
                if applied == 1 {
                    l.acknowledge(&op);
                }
                if unknown == 1 {
                    sweep.commit_unknown += 1;
                } else if after.closed > before.closed {
                    sweep.closed_mid_statement += 1;
                } else if after.rollbacks > before.rollbacks {
                    sweep.rolled_back_idle += 1;
                }
            }
        }
        l.assert_consistent(0);
    }
    assert!(sweep.polls_to_finish > 0, "never finished: {sweep:?}");
    sweep
}
