//! Read replicas: which server a `read_only` call runs on, and
//! read-your-writes.
//!
//! Each replica is a [`Pool`] of its own (its connections must be replicas,
//! see [`super::role`]). A read goes to the next replica in turn that is not
//! left out; a replica that gives no connection in time is left out for a
//! while (1 s, doubling up to 30 s), then tried again by one read. With a
//! floor on this thread ([`super::floor`]), the replica must show it: a
//! replica already seen at or past it serves at once, another is waited for
//! (bounded; not again for a second once found behind), and a read that
//! still cannot be served by a replica runs on the primary. Pools without
//! replicas never get here beyond one branch.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use super::builder::Config;
use super::floor::{self, Floor};
use super::replica_health::{self, AfterWait, ReplicaHealth};
use super::signals::Warning;
use super::token::WriteToken;
use super::tracked::Tracked;
use super::{Pool, PooledConnection};
use crate::backend::{Position, PositionOf, TxnConnection};
use crate::stats::{Counters, PoolStats};
use crate::{Error, Options};

/// The replica knobs of a pool's configuration (sync or async).
#[derive(Debug, Clone)]
pub(crate) struct ReplicaSettings {
    pub urls: Vec<String>,
    pub checkout_timeout: Duration,
    pub ryw_timeout: Duration,
}

impl Default for ReplicaSettings {
    fn default() -> Self {
        ReplicaSettings {
            urls: Vec::new(),
            checkout_timeout: Duration::from_millis(500),
            ryw_timeout: Duration::from_millis(250),
        }
    }
}

/// The replicas of one pool.
pub(super) struct Replicas<C: TxnConnection> {
    set: Vec<Replica<C>>,
    next: AtomicUsize,
    ryw_timeout: Duration,
}

struct Replica<C: TxnConnection> {
    pool: Pool<C>,
    health: ReplicaHealth,
}

impl<C: TxnConnection> Replicas<C> {
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
                let pool = Pool::from_config(config.for_replica(url), Ok(None));
                let health = ReplicaHealth::new(pool.shared.config.server());
                Replica { pool, health }
            })
            .collect();
        Some(Replicas {
            set,
            next: AtomicUsize::new(0),
            ryw_timeout: config.replicas.ryw_timeout,
        })
    }

    /// A connection to a replica that shows `floor`, or `None`: the read
    /// runs on the primary.
    fn checkout(
        &self,
        counters: &Counters,
        function: &'static str,
        floor: Option<&Position>,
    ) -> Option<PooledConnection<C>> {
        let start = self.next.fetch_add(1, Relaxed);
        for replica in replica_health::order(&self.set, start, |r| &r.health, floor) {
            let health = &replica.health;
            let must_wait = floor.filter(|f| !health.shows(f));
            if must_wait.is_some() && health.behind() {
                continue;
            }
            if !health.take_turn(replica.pool.shared.config.checkout_timeout) {
                continue;
            }
            let mut conn = match replica.pool.checkout(Some(function)) {
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
            let t = conn.tracked();
            let server = t.server;
            let answer = t
                .conn
                .wait_for(&server, floor, self.ryw_timeout)
                .map_err(|e| e.to_string());
            match health.after_wait(floor, answer) {
                AfterWait::Serve => return Some(conn),
                AfterWait::Primary => return None,
                AfterWait::Next { promoted } => {
                    t.flags.set_discard();
                    if promoted {
                        replica.pool.shared.signals.role_changed();
                    }
                }
            }
        }
        None
    }
}

impl<C: TxnConnection> Pool<C> {
    /// The connection for an outermost call, into `slot` (see
    /// [`checkout_into`](Self::checkout_into)): a replica's for a
    /// `read_only` call on a pool with replicas that can serve it, the
    /// primary's otherwise.
    #[inline(always)]
    pub(crate) fn checkout_for<'s>(
        &self,
        options: &Options,
        slot: &'s mut Option<PooledConnection<C>>,
    ) -> Result<&'s mut PooledConnection<C>, Error> {
        if options.read_only {
            if let Some(replicas) = &self.shared.replicas {
                return self.checkout_read(replicas, options, slot);
            }
        }
        self.checkout_into(options.name, slot)
    }

    /// A `read_only` call on a pool with replicas: a replica that shows
    /// this thread's writes, else the primary.
    #[inline(never)]
    fn checkout_read<'s>(
        &self,
        replicas: &Replicas<C>,
        options: &Options,
        slot: &'s mut Option<PooledConnection<C>>,
    ) -> Result<&'s mut PooledConnection<C>, Error> {
        let counters = self.counters();
        if let Some(floor) = &self.floor() {
            if let Some(conn) = replicas.checkout(counters, options.name, floor.as_ref()) {
                Counters::bump(&counters.replica_reads);
                return Ok(slot.insert(conn));
            }
        }
        Counters::bump(&counters.primary_fallbacks);
        self.checkout_into(options.name, slot)
    }

    /// This thread's floor on this pool: `Some(None)` for none, `None` when
    /// it cannot be known now (the read runs on the primary).
    fn floor(&self) -> Option<Option<Position>> {
        match floor::get(self.id()) {
            None => Some(None),
            Some(Floor::Known(p)) => Some(Some(p)),
            Some(Floor::Unknown) => {
                let p = self.server_position()?;
                floor::resolve(self.id(), p.clone());
                Some(Some(p))
            }
        }
    }

    /// After a write transaction committed on `t` (a primary connection):
    /// raise this thread's floor to where the commit is. Nothing for a pool
    /// without replicas.
    #[inline(always)]
    pub(crate) fn committed(&self, t: &mut Tracked<C>) {
        if self.shared.replicas.is_some() {
            self.raise_floor(t);
        }
    }

    #[inline(never)]
    fn raise_floor(&self, t: &mut Tracked<C>) {
        let server = t.server;
        let of = if server.behind_pooler {
            // The session's own last commit is another client's there.
            PositionOf::Server
        } else {
            PositionOf::LastCommit
        };
        match t.conn.position(&server, of) {
            Ok(Some(p)) => floor::raise(self.id(), Floor::Known(p)),
            Ok(None) => self.shared.signals.warn_once(
                Warning::NoPosition,
                "the primary reports no replication position (MariaDB without a binary log, \
                 MySQL with gtid_mode off): reads on replicas cannot wait for this thread's \
                 writes",
            ),
            // Committed, but where is not known: the primary's position at
            // the next read stands for it.
            Err(_) => floor::raise(self.id(), Floor::Unknown),
        }
    }

    /// The primary's position now, at or past every commit made before.
    fn server_position(&self) -> Option<Position> {
        let mut conn = self.checkout(Some("db_txn::read_your_writes")).ok()?;
        let t = conn.tracked();
        let server = t.server;
        t.conn.position(&server, PositionOf::Server).ok().flatten()
    }

    /// Where this thread's writes on this pool are in the replication
    /// stream: a token that makes reads elsewhere see them (see
    /// [`read_after`](Self::read_after)). It covers every write transaction
    /// this thread committed on the pool and every token it was given.
    /// `None` when there is none, or the pool has no
    /// [`replica`](crate::PoolBuilder::replica)s (it keeps no positions then).
    ///
    /// ```no_run
    /// # use diesel::PgConnection;
    /// # #[db_txn::db_txn]
    /// # fn rename(conn: &mut PgConnection, id: i64, name: &str) -> Result<(), db_txn::Error> { Ok(()) }
    /// # fn main() -> Result<(), db_txn::Error> {
    /// # let pool = db_txn::Pool::<PgConnection>::builder("postgres://app@primary/app")
    /// #     .replica("postgres://app@replica/app").build()?;
    /// # db_txn::install(pool.clone());
    /// rename(7, "alice")?;
    /// if let Some(token) = pool.last_write() {
    ///     // e.g. a cookie, so that the user's next request reads the new name
    ///     let cookie = format!("db_txn_pos={token}");
    /// #   let _ = cookie;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn last_write(&self) -> Option<WriteToken> {
        self.shared.replicas.as_ref()?;
        self.floor()?.map(|position| WriteToken { position })
    }

    /// Make this thread's reads on this pool see the writes of `token` from
    /// now on: a replica serves them only once it shows those writes (or the
    /// primary does, after
    /// [`read_your_writes_timeout`](crate::PoolBuilder::read_your_writes_timeout)).
    /// Tokens only add up: the thread's reads see every write it was told
    /// about. Nothing for a pool without replicas.
    ///
    /// ```no_run
    /// # use diesel::PgConnection;
    /// # #[db_txn::db_txn(read_only)]
    /// # fn name_of(conn: &mut PgConnection, id: i64) -> Result<String, db_txn::Error> { Ok(String::new()) }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pool = db_txn::Pool::<PgConnection>::builder("postgres://app@primary/app")
    /// #     .replica("postgres://app@replica/app").build()?;
    /// # db_txn::install(pool.clone());
    /// # let cookie = "lsn:0/3000060";
    /// let token: db_txn::WriteToken = cookie.parse()?;
    /// pool.read_after(&token);
    /// let name = name_of(7)?; // never older than the write behind the token
    /// # let _ = name;
    /// # Ok(()) }
    /// ```
    pub fn read_after(&self, token: &WriteToken) {
        if self.shared.replicas.is_some() {
            floor::raise(self.id(), Floor::Known(token.position.clone()));
        }
    }

    /// The counters and live state of each replica's pool, in the order the
    /// replicas were added (empty without replicas). The pool's own
    /// [`stats`](Self::stats) count the reads each served
    /// (`replica_reads`, `primary_fallbacks`).
    pub fn replica_stats(&self) -> Vec<PoolStats> {
        self.shared
            .replicas
            .as_ref()
            .map(|r| r.set.iter().map(|r| r.pool.stats()).collect())
            .unwrap_or_default()
    }
}
