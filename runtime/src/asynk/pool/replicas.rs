//! Read replicas of an [`AsyncPool`]: which server a `read_only` call runs
//! on, and read-your-writes, with the sync pool's rules (`pool/replicas.rs`)
//! and its per-replica bookkeeping (`pool/replica_health.rs`).
//!
//! Each replica is an [`AsyncPool`] of its own whose connections must be
//! replicas (the role check of `pool/role.rs`). The one difference: the
//! floor a read must see is the pool's, not the thread's (a task moves
//! between threads, and a thread runs many tasks): every write transaction
//! committed on the pool, and every [`WriteToken`] given to
//! [`AsyncPool::read_after`], raises it for every later read on the pool.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::builder::Config;
use super::slot::Slot;
use super::{pooler, AsyncPool, AsyncPooledConnection};
use crate::backend::{AsyncTxnConnection, Position, PositionOf, ServerInfo};
use crate::pool::floor::Floor;
use crate::pool::replica_health::{self, AfterWait, ReplicaHealth};
use crate::pool::signals::Warning;
use crate::pool::WriteToken;
use crate::stats::{Counters, PoolStats};
use crate::{Error, Options};

/// The replicas of one async pool, and its read-your-writes floor.
pub(super) struct AsyncReplicas<C: AsyncTxnConnection> {
    set: Vec<AsyncReplica<C>>,
    next: AtomicUsize,
    ryw_timeout: Duration,
    /// What every read on the pool must see.
    floor: Mutex<Option<Floor>>,
}

struct AsyncReplica<C: AsyncTxnConnection> {
    pool: AsyncPool<C>,
    health: ReplicaHealth,
}

impl<C: AsyncTxnConnection> AsyncReplicas<C> {
    /// `None` for a pool without replicas.
    pub(super) fn new(config: &Config<C>) -> Option<Self> {
        if config.replicas.urls.is_empty() {
            return None;
        }
        let set = config
            .replicas
            .urls
            .iter()
            .map(|url| {
                // Lazily: a replica that is down must not stop the service.
                let replica = config.for_replica(url);
                let health = ReplicaHealth::new(replica.server());
                AsyncReplica {
                    pool: AsyncPool::from_config(replica),
                    health,
                }
            })
            .collect();
        Some(AsyncReplicas {
            set,
            next: AtomicUsize::new(0),
            ryw_timeout: config.replicas.ryw_timeout,
            floor: Mutex::new(None),
        })
    }

    fn floor_lock(&self) -> MutexGuard<'_, Option<Floor>> {
        self.floor.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection to a replica that shows `floor`, or `None`: the read
    /// runs on the primary.
    async fn checkout(
        &self,
        counters: &Counters,
        function: &'static str,
        floor: Option<&Position>,
    ) -> Option<AsyncPooledConnection<C>> {
        let start = self.next.fetch_add(1, Relaxed);
        for replica in replica_health::order(&self.set, start, |r| &r.health, floor) {
            let health = &replica.health;
            let must_wait = floor.filter(|f| !health.shows(f));
            if must_wait.is_some() && health.behind() {
                continue;
            }
            if !health.take_turn(replica.pool.shared.checkout_timeout) {
                continue;
            }
            let mut conn = match replica.pool.checkout(Some(function)).await {
                Ok(conn) => conn,
                Err(e) => {
                    health.checkout_failed(&e);
                    continue;
                }
            };
            let Some(floor) = must_wait else {
                health.succeeded();
                return Some(conn);
            };
            Counters::bump(&counters.replica_waits);
            let slot = conn.slot();
            let answer = wait_for(slot, floor, self.ryw_timeout).await;
            match health.after_wait(floor, answer.map_err(|e| e.to_string())) {
                AfterWait::Serve => return Some(conn),
                AfterWait::Primary => return None,
                AfterWait::Next { promoted } => {
                    slot.tracked.flags.set_discard();
                    if promoted {
                        replica.pool.shared.signals.role_changed();
                    }
                }
            }
        }
        None
    }
}

/// Wait on a replica's connection until it shows `floor`, at most `limit`
/// (behind a transaction pooler, in a transaction of its own: one server
/// session for the whole look).
async fn wait_for<C: AsyncTxnConnection>(
    slot: &mut Slot<C>,
    floor: &Position,
    limit: Duration,
) -> diesel::QueryResult<crate::backend::Replay> {
    let server = slot.tracked.server;
    pooler::own_read(&mut slot.tracked.conn, server.behind_pooler, async |c| {
        c.wait_for(&server, floor, limit).await
    })
    .await
}

/// A position read on a primary connection, as [`wait_for`] does.
async fn position<C: AsyncTxnConnection>(
    conn: &mut C,
    server: &ServerInfo,
    of: PositionOf,
) -> diesel::QueryResult<Option<Position>> {
    pooler::own_read(conn, server.behind_pooler, async |c| {
        c.position(server, of).await
    })
    .await
}

impl<C: AsyncTxnConnection> AsyncPool<C> {
    /// Whether an outermost call with `options` is routed to a replica: a
    /// `read_only` call on a pool with replicas. The runner then awaits
    /// [`checkout_read`](Self::checkout_read) boxed, so that the routing's
    /// futures stay out of every call's future (only reads on pools with
    /// replicas pay for it, and a call's future nests no deeper).
    #[inline(always)]
    pub(crate) fn routes_to_replica(&self, options: &Options) -> bool {
        options.read_only && self.shared.replicas.is_some()
    }

    /// A `read_only` call on a pool with replicas: a replica that shows the
    /// pool's floor, else the primary.
    pub(crate) async fn checkout_read(
        &self,
        options: &Options,
    ) -> Result<AsyncPooledConnection<C>, Error> {
        let counters = self.counters();
        if let Some(replicas) = &self.shared.replicas {
            if let Some(floor) = self.floor(replicas).await {
                if let Some(conn) = replicas
                    .checkout(counters, options.name, floor.as_ref())
                    .await
                {
                    Counters::bump(&counters.replica_reads);
                    return Ok(conn);
                }
            }
            Counters::bump(&counters.primary_fallbacks);
        }
        self.checkout(Some(options.name)).await
    }

    /// The pool's floor: `Some(None)` for none, `None` when it cannot be
    /// known now (the read runs on the primary).
    async fn floor(&self, replicas: &AsyncReplicas<C>) -> Option<Option<Position>> {
        let floor = replicas.floor_lock().clone();
        match floor {
            None => Some(None),
            Some(Floor::Known(p)) => Some(Some(p)),
            Some(Floor::Unknown) => {
                let p = self.server_position().await?;
                Floor::resolve(&mut replicas.floor_lock(), p.clone());
                Some(Some(p))
            }
        }
    }

    /// Whether the pool keeps a read-your-writes floor (it has replicas).
    #[inline(always)]
    pub(crate) fn has_replicas(&self) -> bool {
        self.shared.replicas.is_some()
    }

    /// After a write transaction committed on `slot` (a primary
    /// connection): raise the pool's floor to where the commit is. Nothing
    /// for a pool without replicas. The runner awaits it boxed (see
    /// [`routes_to_replica`](Self::routes_to_replica)).
    pub(crate) async fn raise_floor(&self, slot: &mut Slot<C>) {
        let Some(replicas) = &self.shared.replicas else {
            return;
        };
        let server = slot.tracked.server;
        let of = if server.behind_pooler {
            // The session's own last commit is another client's there.
            PositionOf::Server
        } else {
            PositionOf::LastCommit
        };
        let raised = match position(&mut slot.tracked.conn, &server, of).await {
            Ok(Some(p)) => Floor::Known(p),
            Ok(None) => {
                self.shared.signals.warn_once(
                    Warning::NoPosition,
                    "the primary reports no replication position (MariaDB without a binary \
                     log, MySQL with gtid_mode off): reads on replicas cannot wait for the \
                     pool's writes",
                );
                return;
            }
            // Committed, but where is not known: the primary's position at
            // the next read stands for it.
            Err(_) => Floor::Unknown,
        };
        Floor::raise(&mut replicas.floor_lock(), raised);
    }

    /// The primary's position now, at or past every commit made before.
    async fn server_position(&self) -> Option<Position> {
        let mut conn = self.checkout(Some("db_txn::read_your_writes")).await.ok()?;
        let slot = conn.slot();
        let server = slot.tracked.server;
        position(&mut slot.tracked.conn, &server, PositionOf::Server)
            .await
            .ok()
            .flatten()
    }

    /// Where the writes of this pool are in the replication stream: a token
    /// that makes reads elsewhere (another pool, another process) see them
    /// (see [`read_after`](Self::read_after)). It covers every write
    /// transaction committed on the pool and every token it was given.
    /// `None` when there is none, or the pool has no
    /// [`replica`](super::AsyncPoolBuilder::replica)s (it keeps no
    /// positions then). Async, unlike [`Pool::last_write`](crate::Pool::last_write):
    /// when a commit's position could not be read, the primary is asked for
    /// its own.
    ///
    /// ```no_run
    /// # use diesel_async::AsyncPgConnection;
    /// # #[db_txn::db_txn]
    /// # async fn rename(conn: &mut AsyncPgConnection, id: i64, name: &str) -> Result<(), db_txn::Error> { Ok(()) }
    /// # async fn f() -> Result<(), db_txn::Error> {
    /// # let pool = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@primary/app")
    /// #     .replica("postgres://app@replica/app").build().await?;
    /// # db_txn::install_async(pool.clone());
    /// rename(7, "alice").await?;
    /// if let Some(token) = pool.last_write().await {
    ///     // e.g. a cookie, so that the user's next request reads the new name
    ///     let cookie = format!("db_txn_pos={token}");
    /// #   let _ = cookie;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn last_write(&self) -> Option<WriteToken> {
        let replicas = self.shared.replicas.as_ref()?;
        self.floor(replicas)
            .await?
            .map(|position| WriteToken { position })
    }

    /// Make every later read on this pool see the writes of `token`: a
    /// replica serves them only once it shows those writes (or the primary
    /// does, after
    /// [`read_your_writes_timeout`](super::AsyncPoolBuilder::read_your_writes_timeout)).
    /// Tokens only add up. Nothing for a pool without replicas.
    ///
    /// ```no_run
    /// # use diesel_async::AsyncPgConnection;
    /// # #[db_txn::db_txn(read_only)]
    /// # async fn name_of(conn: &mut AsyncPgConnection, id: i64) -> Result<String, db_txn::Error> { Ok(String::new()) }
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = db_txn::AsyncPool::<AsyncPgConnection>::builder("postgres://app@primary/app")
    /// #     .replica("postgres://app@replica/app").build().await?;
    /// # db_txn::install_async(pool.clone());
    /// # let cookie = "lsn:0/3000060";
    /// let token: db_txn::WriteToken = cookie.parse()?;
    /// pool.read_after(&token);
    /// let name = name_of(7).await?; // never older than the write behind the token
    /// # let _ = name;
    /// # Ok(()) }
    /// ```
    pub fn read_after(&self, token: &WriteToken) {
        if let Some(replicas) = &self.shared.replicas {
            Floor::raise(
                &mut replicas.floor_lock(),
                Floor::Known(token.position.clone()),
            );
        }
    }

    /// The counters and live state of each replica's pool, in the order the
    /// replicas were added (empty without replicas). The pool's own
    /// [`stats`](Self::stats) count the reads each served
    /// (`replica_reads`, `primary_fallbacks`, `replica_waits`).
    pub fn replica_stats(&self) -> Vec<PoolStats> {
        self.shared
            .replicas
            .as_ref()
            .map(|r| r.set.iter().map(|r| r.pool.stats()).collect())
            .unwrap_or_default()
    }
}
