//! The failover and demotion rows of `tests/fault/topology.rs` on the async
//! form, with the pool's default settings: the same servers, the same
//! faults, the same checks (nothing lost, nothing applied twice, no error
//! reaching the caller but a `CommitUnknown` whose COMMIT was in flight, no
//! connection left behind on either server).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use db_txn::{db_txn, AsyncPool, AsyncTxnConnection};

use crate::ledger::{self, Ledger, LedgerError};
use crate::replicated::{port_of_writer, Replicated, V};

/// A call that succeeds after a fault takes at most this long here.
const BOUND: Duration = Duration::from_secs(15);

/// A transfer whose `before_commit` runs after all its writes.
#[db_txn(pool = pool)]
pub async fn transfer_then<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    op: &str,
    before_commit: &(dyn Fn() + Sync),
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 3); \
         UPDATE accounts SET balance = balance - 3 WHERE id = 0; \
         UPDATE accounts SET balance = balance + 3 WHERE id = 1"
    ))
    .await?;
    before_commit();
    Ok(())
}

/// A primary with one replica, caught up.
pub(crate) fn pair<S: Replicated>() -> (S, S) {
    let primary = S::start_primary();
    let replica = primary.start_replica();
    (primary, replica)
}

pub(crate) fn database<S: Replicated>(name: &str) -> String {
    format!("{}_async_{name}", S::NAME)
}

/// The port of the server the pool's writes go to.
async fn writer_port<S: Replicated>(pool: &AsyncPool<S::Conn>) -> i64
where
    diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'static, S::Conn, V>,
{
    port_of_writer(pool, S::PORT_SQL)
        .await
        .unwrap_or_else(|e| panic!("the writer's port: {e:?}"))
}

/// What the load tasks of a failover saw.
#[derive(Default)]
struct Outcomes {
    done: Vec<(String, Instant)>,
    unknown: Vec<String>,
    errors: Vec<String>,
    slowest: Duration,
}

/// Load tasks running until told to stop.
struct Load {
    tasks: tokio::task::JoinSet<()>,
    outcomes: Arc<Mutex<Outcomes>>,
}

impl Load {
    /// Transfers from `tasks` tasks on the runtime's workers until `stop`,
    /// each op id unique.
    fn start<C: AsyncTxnConnection>(
        pool: &AsyncPool<C>,
        tasks: usize,
        stop: &Arc<AtomicBool>,
    ) -> Load {
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let next = Arc::new(AtomicU64::new(0));
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..tasks {
            let (pool, stop, next, outcomes) =
                (pool.clone(), stop.clone(), next.clone(), outcomes.clone());
            set.spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst) as i64;
                    let op = format!("load-{n}");
                    let started = Instant::now();
                    // Rows locked in one order (the last account after the
                    // others): concurrent transfers never deadlock.
                    let last = ledger::ACCOUNTS - 1;
                    let r = ledger::transfer(&pool, &op, n % last, last, 7, &|| {}).await;
                    let mut o = outcomes.lock().unwrap();
                    o.slowest = o.slowest.max(started.elapsed());
                    match r {
                        Ok(()) => o.done.push((op, Instant::now())),
                        Err(LedgerError::Txn(e)) if e.is_commit_unknown() => o.unknown.push(op),
                        Err(e) => o.errors.push(format!("{op}: {e:?}")),
                    }
                }
            });
        }
        Load {
            tasks: set,
            outcomes,
        }
    }

    /// Waits for the tasks (told to stop) and takes what they saw.
    async fn finish(mut self) -> Outcomes {
        while let Some(joined) = self.tasks.join_next().await {
            joined.expect("a load task panicked");
        }
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}

/// The primary fails while four tasks run transfers through a URL that
/// follows the primary (PostgreSQL: a multi-host URL with
/// `target_session_attrs=read-write`, the primary killed (SIGKILL) and its
/// synchronous standby promoted; MariaDB: a moving address, the primary made
/// read-only, the replica promoted and the proxy re-pointed). No call sees
/// an error but one whose COMMIT was in flight (`CommitUnknown`, then checked
/// in the data); the time from the promotion to the first successful call is
/// printed.
pub async fn failover_under_load<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    S::durable(&primary);
    let writer = S::writer(&primary, &replica, &database::<S>("failover"));
    let url = writer.url().to_owned();
    let mut l = Ledger::new(&primary, "failover", async |_| {
        Ledger::<S>::pool(url, 4).await
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let load = Load::start(&l.pool, 4, &stop);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The kit's calls block: made on this thread (the test's own, not one
    // of the runtime's workers, which run the load meanwhile).
    let failed = Instant::now();
    S::fail_primary(&primary, &replica);
    let promoting = Instant::now();
    S::take_over(&replica, &writer);
    let promoted = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let outcomes = load.finish().await;
    l.server = &replica;
    assert!(
        outcomes.errors.is_empty(),
        "calls failed: {:?}",
        outcomes.errors
    );
    let before = outcomes.done.iter().filter(|(_, at)| *at < failed).count();
    // Nothing commits between the failure and the promotion's start.
    let first = outcomes
        .done
        .iter()
        .map(|(_, at)| *at)
        .filter(|at| *at >= promoting)
        .min()
        .expect("calls succeeded after the failover");
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let s = l.pool.stats();
    eprintln!(
        "async failover: {before} calls before, {} in all, {} commit-unknown; the primary \
         failed {:.1} ms before the promotion began; the promotion took {:.1} ms; first \
         successful call {:.1} ms after it began ({:+.1} ms after it returned); slowest call \
         {:?}; {s:?}",
        outcomes.done.len(),
        outcomes.unknown.len(),
        ms(promoting - failed),
        ms(promoted - promoting),
        ms(first - promoting),
        if first >= promoted {
            ms(first - promoted)
        } else {
            -ms(promoted - first)
        },
        outcomes.slowest,
    );
    assert!(before > 0, "the load ran before the failover");
    assert!(outcomes.slowest < BOUND, "{:?}", outcomes.slowest);
    let mut extra = 0;
    for op in &outcomes.unknown {
        let n = l.times_applied(op);
        assert!(n <= 1, "{op} applied {n} times");
        extra += n;
    }
    l.done = outcomes.done.into_iter().map(|(op, _)| op).collect();
    l.assert_consistent(extra);
    l.assert_no_leak_with(|| replica.clients(&l.database)).await;
}

async fn hold<C: AsyncTxnConnection>(pool: &AsyncPool<C>) {
    let _c = pool.get().await.expect("conn");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// The primary is demoted read-only while the pool holds four idle
/// connections to it (a plain ping still succeeds there) and the replica
/// takes over (PostgreSQL: fenced with `default_transaction_read_only`,
/// standby promoted, multi-host URL; MariaDB: switchover, moving address).
/// The first write refused as read-only runs again on the new primary,
/// every older connection has its role checked: no caller error, and no
/// connection of the pool stays on the old primary.
pub async fn demoted_with_idle_connections<S: Replicated>()
where
    diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'static, S::Conn, V>,
{
    let (primary, replica) = pair::<S>();
    let writer = S::writer(&primary, &replica, &database::<S>("demoted"));
    let url = writer.url().to_owned();
    let mut l = Ledger::new(&primary, "demoted", async |_| {
        Ledger::<S>::pool(url, 4).await
    })
    .await;
    tokio::join!(hold(&l.pool), hold(&l.pool), hold(&l.pool), hold(&l.pool));
    l.transfer().await;
    assert_eq!(l.pool.stats().idle_connections, 4, "four idle connections");
    S::demote_over(&primary, &replica, &writer);
    l.server = &replica;
    for _ in 0..20 {
        l.transfer().await;
    }
    let s = l.pool.stats();
    eprintln!("async demoted: {s:?}");
    assert!(s.role_mismatches >= 1, "{s:?}");
    assert!(s.retries >= 1, "the first write ran again: {s:?}");
    assert_eq!(s.commit_unknowns, 0, "{s:?}");
    assert_eq!(writer_port::<S>(&l.pool).await, i64::from(replica.port()));
    let left = crate::server::eventually(Duration::from_secs(10), || {
        primary.clients(&l.database) == 0
    })
    .await;
    assert!(left, "nothing left on the old primary");
    l.assert_consistent(0);
    l.assert_no_leak_with(|| replica.clients(&l.database)).await;
    l.assert_bounded(BOUND);
}

/// The server turns read-only between a transaction's last write and its
/// COMMIT (a switchover behind a moving address): the COMMIT is refused
/// (MariaDB 1290), which is a definite rollback, so the body runs again on
/// the new primary and commits once; never `CommitUnknown`.
pub async fn read_only_at_commit<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    let writer = S::writer(&primary, &replica, &database::<S>("ro_commit"));
    let url = writer.url().to_owned();
    let mut l = Ledger::new(&primary, "ro_commit", async |_| {
        Ledger::<S>::pool(url, 2).await
    })
    .await;
    l.transfer().await;
    let fired = AtomicBool::new(false);
    transfer_then::<S::Conn>(&l.pool, "at-commit", &|| {
        if !fired.swap(true, Ordering::SeqCst) {
            S::demote_over(&primary, &replica, &writer);
        }
    })
    .await
    .expect("the refused COMMIT ran again on the new primary");
    l.server = &replica;
    l.acknowledge("at-commit");
    let s = l.pool.stats();
    assert_eq!((s.commit_unknowns, s.retries), (0, 1), "{s:?}");
    assert!(s.role_mismatches >= 1, "{s:?}");
    assert_eq!(l.times_applied("at-commit"), 1);
    l.transfer().await;
    l.assert_consistent(0);
    l.assert_no_leak_with(|| replica.clients(&l.database)).await;
}

#[db_txn(pool = pool, retry = 0)]
async fn long_statement<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    sql: &str,
) -> Result<(), LedgerError> {
    conn.batch_execute(sql).await?;
    Ok(())
}

/// After a failover, a statement that runs longer than
/// `liveness_check_after` on the new primary is left to run: the liveness
/// probe opens its connection through the pool's URL for each question, so it
/// asks the new primary, which knows the session, and not the old one (still
/// up, read-only), which would call it unknown and have it cut.
pub async fn long_statement_after_failover<S: Replicated>() {
    let (primary, replica) = pair::<S>();
    let writer = S::writer(&primary, &replica, &database::<S>("long_after"));
    let url = writer.url().to_owned();
    let mut l = Ledger::new(&primary, "long_after", async |_| {
        AsyncPool::builder(url)
            .max_size(2)
            .checkout_timeout(Duration::from_secs(10))
            .liveness_check_after(Some(Duration::from_millis(500)))
            .build()
            .await
            .expect("pool")
    })
    .await;
    l.transfer().await;
    // The probe asks about this one (busy), on the primary of the moment.
    long_statement::<S::Conn>(&l.pool, &S::sleep_sql(2.0))
        .await
        .expect("a long statement");
    S::demote_over(&primary, &replica, &writer);
    l.server = &replica;
    l.transfer().await;
    let started = Instant::now();
    let r = long_statement::<S::Conn>(&l.pool, &S::sleep_sql(2.0)).await;
    let s = l.pool.stats();
    eprintln!(
        "async long statement after failover: {r:?} in {:?}, {s:?}",
        started.elapsed()
    );
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(s.stalls_cut, 0, "{s:?}");
    l.assert_consistent(0);
    // The probe keeps no connection: only the pool's are on the new primary,
    // none is left on the old one.
    l.assert_no_leak_with(|| replica.clients(&l.database)).await;
    assert_eq!(primary.clients(&l.database), 0);
}
