//! The ledger workload: transfers with unique operation ids.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use db_txn::{db_txn, Pool, PoolStats, TxnConnection};
use diesel::connection::SimpleConnection;

use super::TestServer;

pub const ACCOUNTS: i64 = 4;
pub const OPENING_BALANCE: i64 = 1000;

#[derive(Debug)]
pub enum LedgerError {
    Db(diesel::result::Error),
    Txn(db_txn::Error),
    Refused,
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
pub fn transfer<C: TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    op: &str,
    from: i64,
    to: i64,
    amount: i64,
    mid: &dyn Fn(),
) -> Result<(), LedgerError> {
    // `batch_execute` works on any diesel connection without backend bounds.
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', {from}, {to}, {amount})"
    ))?;
    mid();
    conn.batch_execute(&format!(
        "UPDATE accounts SET balance = balance - {amount} WHERE id = {from}"
    ))?;
    conn.batch_execute(&format!(
        "UPDATE accounts SET balance = balance + {amount} WHERE id = {to}"
    ))?;
    Ok(())
}

/// A ledger in its own database, with the pool that serves it.
pub struct Ledger<'s, S: TestServer> {
    pub server: &'s S,
    pub database: String,
    pub pool: Pool<S::Conn>,
    /// Operations the caller was told succeeded.
    pub done: Vec<String>,
    /// The longest call so far.
    pub slowest: Duration,
    next: AtomicU64,
}

impl<'s, S: TestServer> Ledger<'s, S> {
    /// A fresh database `<backend>_<name>` with the ledger schema, and a pool
    /// built by `configure` from its URL.
    pub fn new(server: &'s S, name: &str, configure: impl FnOnce(String) -> Pool<S::Conn>) -> Self {
        let database = format!("{}_{name}", S::NAME);
        let url = server.create_database(&database);
        let pool = configure(url);
        pool.get()
            .expect("a first connection")
            .batch_execute(&format!(
                "CREATE TABLE ops (op_id VARCHAR(64) PRIMARY KEY, src INT NOT NULL, \
                 dst INT NOT NULL, amount BIGINT NOT NULL); \
                 CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL); \
                 INSERT INTO accounts (id, balance) VALUES {}",
                (0..ACCOUNTS)
                    .map(|i| format!("({i}, {OPENING_BALANCE})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .expect("schema");
        Ledger {
            server,
            database,
            pool,
            done: Vec::new(),
            slowest: Duration::ZERO,
            next: AtomicU64::new(0),
        }
    }

    /// A pool with test-friendly limits on `url`.
    pub fn pool(url: String, max_size: u32) -> Pool<S::Conn> {
        Pool::builder(url)
            .max_size(max_size)
            .checkout_timeout(Duration::from_secs(10))
            .build()
            .expect("pool")
    }

    /// The next operation's id and accounts.
    pub fn next_op(&self) -> (String, i64, i64) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as i64;
        (format!("op-{n}"), n % ACCOUNTS, (n + 1) % ACCOUNTS)
    }

    /// One transfer that must succeed; `mid` runs inside the transaction.
    pub fn transfer_with(&mut self, mid: &dyn Fn()) {
        let (op, from, to) = self.next_op();
        let started = Instant::now();
        transfer(&self.pool, &op, from, to, 7, mid)
            .unwrap_or_else(|e| panic!("{op} reached the caller as an error: {e:?}"));
        self.slowest = self.slowest.max(started.elapsed());
        self.done.push(op);
    }

    /// An operation the caller was told succeeded, run outside
    /// [`transfer_with`](Self::transfer_with).
    pub fn acknowledge(&mut self, op: &str) {
        self.done.push(op.to_owned());
    }

    /// One transfer that must succeed.
    pub fn transfer(&mut self) {
        self.transfer_with(&|| {});
    }

    /// A transfer that may fail; returns the op id and the outcome.
    pub fn try_transfer(&mut self, mid: &dyn Fn()) -> (String, Result<(), LedgerError>) {
        let (op, from, to) = self.next_op();
        let r = transfer(&self.pool, &op, from, to, 7, mid);
        if r.is_ok() {
            self.done.push(op.clone());
        }
        (op, r)
    }

    /// How many times `op` is in the ledger.
    pub fn times_applied(&self, op: &str) -> i64 {
        self.count(&format!("SELECT COUNT(*) FROM ops WHERE op_id = '{op}'"))
    }

    /// Every acknowledged operation applied exactly once, nothing else, and
    /// every balance equal to what the ledger says.
    pub fn assert_consistent(&self, extra_rows: i64) {
        let q = |sql: &str| self.count(sql);
        let rows = q("SELECT COUNT(*) FROM ops");
        assert_eq!(
            rows,
            self.done.len() as i64 + extra_rows,
            "ledger rows vs acknowledged operations"
        );
        for op in &self.done {
            assert_eq!(
                q(&format!("SELECT COUNT(*) FROM ops WHERE op_id = '{op}'")),
                1,
                "{op} lost"
            );
        }
        let wrong = q(&format!(
            "SELECT COUNT(*) FROM accounts a WHERE a.balance <> {OPENING_BALANCE} \
             + COALESCE((SELECT SUM(amount) FROM ops WHERE dst = a.id), 0) \
             - COALESCE((SELECT SUM(amount) FROM ops WHERE src = a.id), 0)"
        ));
        assert_eq!(
            wrong, 0,
            "balances disagree with the ledger: a transfer was half-applied"
        );
    }

    /// A count in the ledger's database.
    pub fn count(&self, sql: &str) -> i64 {
        S::count(&self.pool, sql)
    }

    /// The pool is back to all-idle and the server sees exactly the pool's
    /// connections. Polled for a while: a connection closed by the client
    /// reaches the server a moment later, and one the pool was still opening
    /// in the background (during an outage) joins the pool late.
    pub fn assert_no_leak(&self) {
        self.assert_no_leak_with(&|| self.pool.stats(), &|| {
            self.server.connection_count(&self.database)
        });
    }

    /// [`assert_no_leak`](Self::assert_no_leak) for a pool whose stats
    /// `stats` gives, and a server whose count of its connections `server`
    /// gives (another server than the ledger's: a replica, a new primary).
    pub fn assert_no_leak_with(&self, stats: &dyn Fn() -> PoolStats, server: &dyn Fn() -> i64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = stats();
            let server = server();
            let settled = s.connections == s.idle_connections && server == i64::from(s.connections);
            if settled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "leak: {server} server-side connections, pool {s:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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
