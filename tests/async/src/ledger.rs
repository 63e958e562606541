//! The ledger workload of `tests/fault/ledger.rs` on the async form:
//! transfers with unique operation ids, checked against the server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use db_txn::{db_txn, AsyncPool, AsyncTxnConnection};
use diesel_async::SimpleAsyncConnection;

use crate::server::eventually;
use crate::AsyncServer;

pub const ACCOUNTS: i64 = 4;
pub const OPENING_BALANCE: i64 = 1000;

#[derive(Debug)]
pub enum LedgerError {
    Db(diesel::result::Error),
    Txn(db_txn::Error),
}
impl From<diesel::result::Error> for LedgerError {
    fn from(e: diesel::result::Error) -> Self {
        LedgerError::Db(e)
    }
}
impl From<db_txn::Error> for LedgerError {
    fn from(e: db_txn::Error) -> Self {
        LedgerError::Txn(e)
    }
}

/// One transfer: a ledger row and two balance updates, in one transaction.
/// `mid` runs between the ledger row and the balances, once per attempt.
#[db_txn(pool = pool)]
pub async fn transfer<C: AsyncTxnConnection>(
    conn: &mut C,
    pool: &AsyncPool<C>,
    op: &str,
    from: i64,
    to: i64,
    amount: i64,
    mid: &(dyn Fn() + Sync),
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', {from}, {to}, {amount})"
    ))
    .await?;
    mid();
    conn.batch_execute(&format!(
        "UPDATE accounts SET balance = balance - {amount} WHERE id = {from}"
    ))
    .await?;
    conn.batch_execute(&format!(
        "UPDATE accounts SET balance = balance + {amount} WHERE id = {to}"
    ))
    .await?;
    Ok(())
}

/// A ledger in its own database, with the pool that serves it.
pub struct Ledger<'s, S: AsyncServer> {
    pub server: &'s S,
    pub database: String,
    pub url: String,
    pub pool: AsyncPool<S::Conn>,
    /// Operations the caller was told succeeded.
    pub done: Vec<String>,
    /// The longest call so far.
    pub slowest: Duration,
    next: AtomicU64,
}

/// The ledger's tables.
pub fn schema() -> String {
    format!(
        "CREATE TABLE ops (op_id VARCHAR(64) PRIMARY KEY, src INT NOT NULL, \
         dst INT NOT NULL, amount BIGINT NOT NULL); \
         CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL); \
         INSERT INTO accounts (id, balance) VALUES {}",
        (0..ACCOUNTS)
            .map(|i| format!("({i}, {OPENING_BALANCE})"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl<'s, S: AsyncServer> Ledger<'s, S> {
    /// A fresh database `<backend>_async_<name>` with the ledger schema, and
    /// a pool built by `configure` from its URL.
    pub async fn new(
        server: &'s S,
        name: &str,
        configure: impl AsyncFnOnce(String) -> AsyncPool<S::Conn>,
    ) -> Self {
        let database = format!("{}_async_{name}", S::NAME);
        let url = server.create_database(&database);
        let pool = configure(url.clone()).await;
        pool.get()
            .await
            .expect("a first connection")
            .batch_execute(&schema())
            .await
            .expect("schema");
        Ledger {
            server,
            database,
            url,
            pool,
            done: Vec::new(),
            slowest: Duration::ZERO,
            next: AtomicU64::new(0),
        }
    }

    /// A pool with test-friendly limits on `url`.
    pub async fn pool(url: String, max_size: u32) -> AsyncPool<S::Conn> {
        AsyncPool::builder(url)
            .max_size(max_size)
            .checkout_timeout(Duration::from_secs(10))
            .build()
            .await
            .expect("pool")
    }

    pub fn next_op(&self) -> (String, i64, i64) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as i64;
        (format!("op-{n}"), n % ACCOUNTS, (n + 1) % ACCOUNTS)
    }

    /// One transfer that must succeed; `mid` runs inside the transaction.
    pub async fn transfer_with(&mut self, mid: &(dyn Fn() + Sync)) {
        let (op, from, to) = self.next_op();
        let started = Instant::now();
        transfer(&self.pool, &op, from, to, 7, mid)
            .await
            .unwrap_or_else(|e| panic!("{op} reached the caller as an error: {e:?}"));
        self.slowest = self.slowest.max(started.elapsed());
        self.done.push(op);
    }

    /// One transfer that must succeed.
    pub async fn transfer(&mut self) {
        self.transfer_with(&|| {}).await;
    }

    /// A transfer that may fail; returns the op id and the outcome.
    pub async fn try_transfer(
        &mut self,
        mid: &(dyn Fn() + Sync),
    ) -> (String, Result<(), LedgerError>) {
        let (op, from, to) = self.next_op();
        let r = transfer(&self.pool, &op, from, to, 7, mid).await;
        if r.is_ok() {
            self.done.push(op.clone());
        }
        (op, r)
    }

    /// An operation the caller learnt of some other way (a call whose
    /// future was dropped after COMMIT).
    pub fn acknowledge(&mut self, op: &str) {
        self.done.push(op.to_owned());
    }

    /// How many times `op` is in the ledger.
    pub fn times_applied(&self, op: &str) -> i64 {
        self.count(&format!("SELECT COUNT(*) FROM ops WHERE op_id = '{op}'"))
    }

    /// Every acknowledged operation applied exactly once, nothing else, and
    /// every balance equal to what the ledger says.
    pub fn assert_consistent(&self, extra_rows: i64) {
        let rows = self.count("SELECT COUNT(*) FROM ops");
        assert_eq!(
            rows,
            self.done.len() as i64 + extra_rows,
            "ledger rows vs acknowledged operations"
        );
        for op in &self.done {
            assert_eq!(self.times_applied(op), 1, "{op} lost");
        }
        let wrong = self.count(&format!(
            "SELECT COUNT(*) FROM accounts a WHERE a.balance <> {OPENING_BALANCE} \
             + COALESCE((SELECT SUM(amount) FROM ops WHERE dst = a.id), 0) \
             - COALESCE((SELECT SUM(amount) FROM ops WHERE src = a.id), 0)"
        ));
        assert_eq!(
            wrong, 0,
            "balances disagree with the ledger: a transfer was half-applied"
        );
    }

    /// A count in the ledger's database, on a kit connection of its own.
    pub fn count(&self, sql: &str) -> i64 {
        self.server.query_i64_in(&self.database, sql)
    }

    /// The pool is back to all-idle and the server sees exactly the pool's
    /// connections (polled: a closed connection reaches the server a moment
    /// later, and a background ROLLBACK takes a moment).
    pub async fn assert_no_leak(&self) {
        self.assert_no_leak_with(|| self.server.connection_count(&self.database))
            .await;
    }

    /// The same, with the server's count of the ledger's connections from
    /// `clients` (the new primary's, after a failover).
    pub async fn assert_no_leak_with(&self, mut clients: impl FnMut() -> i64) {
        let mut last = String::new();
        let settled = eventually(Duration::from_secs(10), || {
            let s = self.pool.stats();
            let server = clients();
            last = format!("{server} server-side connections, pool {s:?}");
            s.connections == s.idle_connections && server == i64::from(s.connections)
        })
        .await;
        assert!(settled, "leak: {last}");
    }

    /// Every call took less than `bound`.
    pub fn assert_bounded(&self, bound: Duration) {
        assert!(
            self.slowest < bound,
            "slowest call {:?} exceeds {bound:?}",
            self.slowest
        );
    }
}
