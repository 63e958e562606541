//! The r2d2 manager: opens connections with the [`Connector`] and applies the
//! checkout [`Policy`] in r2d2's validation and check-in hooks. The forked
//! child's pool (`child.rs`) drives the same manager.

use diesel::r2d2::{Error as R2d2Error, ManageConnection};

use super::clock;
use super::connect::Connector;
use super::flags::gone;
use super::policy::{Rules, Verdict};
use super::role;
use super::tracked::Tracked;
use crate::backend::TxnConnection;
use crate::stats::Counters;

/// `repr(C)`, aligned to a cache line: the checkout's rules and the
/// connector's first field (the pool's signals) share one line.
#[repr(C, align(64))]
pub(crate) struct Manager<C: TxnConnection> {
    pub policy: Rules,
    pub connector: Connector<C>,
}

impl<C: TxnConnection> ManageConnection for Manager<C> {
    // Boxed: r2d2 moves its connections in and out of its idle list, and a
    // pointer moves for less than the whole state.
    type Connection = Box<Tracked<C>>;
    type Error = R2d2Error;

    fn connect(&self) -> Result<Box<Tracked<C>>, R2d2Error> {
        self.connector.connect()
    }

    fn is_valid(&self, t: &mut Box<Tracked<C>>) -> Result<(), R2d2Error> {
        let signals = &self.connector.signals;
        let now = t.judged_at(clock::now());
        match self.policy.judge(t, signals, now) {
            // The common case, kept short: used successfully just now.
            Verdict::Trust => {
                signals.counters.ping_skipped(&mut t.trusted);
                tracing::trace!(target: "db_txn", "ping skipped: used successfully just now");
                Ok(())
            }
            verdict => self.check(t, verdict),
        }
    }

    fn has_broken(&self, t: &mut Box<Tracked<C>>) -> bool {
        // Unlike diesel's manager, a panicking thread does not break the
        // connection: the runner rolls back before it unwinds further.
        t.returned();
        let broken = t.flags.unusable() || t.conn.is_broken();
        if broken {
            invalidated(t);
        }
        broken
    }
}

impl<C: TxnConnection> Manager<C> {
    /// A verdict other than [`Verdict::Trust`]: close, retire, ping or check
    /// the role.
    #[inline(never)]
    fn check(&self, t: &mut Tracked<C>, verdict: Verdict) -> Result<(), R2d2Error> {
        let signals = &self.connector.signals;
        let counters = &signals.counters;
        let epoch = signals.epoch();
        match verdict {
            Verdict::Broken => Err(R2d2Error::QueryError(gone(t.flags.disconnect()))),
            Verdict::Retire(why) => {
                Counters::bump(&counters.recycled);
                tracing::debug!(target: "db_txn", reason = why, "connection recycled without a ping");
                Err(R2d2Error::QueryError(
                    diesel::result::Error::QueryBuilderError(
                        format!("connection recycled: {why}").into(),
                    ),
                ))
            }
            Verdict::Trust => Ok(()),
            Verdict::Ping => {
                Counters::bump(&counters.pings);
                tracing::trace!(target: "db_txn", "ping");
                // Behind a transaction pooler, no named statement (diesel's
                // ping is one): the next transaction may be another session's.
                let pooler = self.connector.settings.transaction_pooler;
                pinging(t, |conn| {
                    if pooler {
                        conn.batch_execute("SELECT 1")
                    } else {
                        conn.ping()
                    }
                })
                .map_err(R2d2Error::QueryError)?;
                t.last_ok = clock::now();
                t.epoch = epoch;
                Ok(())
            }
            Verdict::CheckRole => {
                Counters::bump(&counters.pings);
                let role_epoch = signals.role_epoch();
                let server = pinging(t, C::role).map_err(R2d2Error::QueryError)?;
                role::settle(self.policy.role, t, server, (epoch, role_epoch)).map_err(|m| {
                    R2d2Error::ConnectionError(diesel::ConnectionError::BadConnection(m))
                })
            }
        }
    }
}

#[cold]
#[inline(never)]
fn invalidated<C>(t: &Tracked<C>) {
    tracing::info!(
        target: "db_txn",
        cause = t.flags.disconnect().map_or("unusable after a failed rollback or reset".into(), |d| d.to_string()),
        "connection invalidated: closed instead of returned to the pool"
    );
}

/// Run a ping (or role check) on `t`: the watchdog asks the server about a
/// ping sooner than about a statement, as a healthy server answers it at once.
fn pinging<C, T>(
    t: &mut Tracked<C>,
    ping: impl FnOnce(&mut C) -> diesel::QueryResult<T>,
) -> diesel::QueryResult<T> {
    t.flags.stamp.pinging(true);
    let result = ping(&mut t.conn);
    t.flags.stamp.pinging(false);
    result
}
