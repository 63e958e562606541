//! deadpool's manager: opens connections with the [`Connector`] and applies
//! the checkout [`Policy`] (the sync pool's) in deadpool's recycle hook,
//! with the sync pool's role check (`pool/role.rs`).

use std::future::Future;

use deadpool::managed::{Metrics, RecycleError, RecycleResult};

use super::connect::{ConnectError, Connector};
use super::pooler;
use super::slot::Slot;
use crate::backend::AsyncTxnConnection;
use crate::pool::clock;
use crate::pool::policy::{Rules, Verdict};
use crate::pool::role;
use crate::pool::stamp::Stamp;
use crate::stats::Counters;

/// The statement of the checkout ping.
const PING: &str = "SELECT 1";

pub(crate) struct Manager<C: AsyncTxnConnection> {
    pub connector: Connector<C>,
    pub policy: Rules,
}

impl<C: AsyncTxnConnection> deadpool::managed::Manager for Manager<C> {
    type Type = Slot<C>;
    type Error = ConnectError;

    async fn create(&self) -> Result<Slot<C>, ConnectError> {
        let opened = self.connector.open().await;
        if opened.is_err() {
            Counters::bump(&self.connector.signals.counters.connect_failures);
        }
        opened
    }

    async fn recycle(&self, slot: &mut Slot<C>, _: &Metrics) -> RecycleResult<ConnectError> {
        // deadpool's metrics stamp the checkout, not the return: the slot
        // keeps its own `last_release`.
        let signals = &self.connector.signals;
        let counters = &signals.counters;
        if !slot.clean() {
            // Never happens: a connection that owes anything is not returned.
            return Err(RecycleError::message("returned with work owed"));
        }
        let epoch = signals.epoch();
        let now = slot.tracked.judged_at(clock::now());
        match self.policy.judge(&slot.tracked, signals, now) {
            Verdict::Broken => Err(RecycleError::message("connection lost earlier")),
            Verdict::Retire(why) => {
                Counters::bump(&counters.recycled);
                tracing::debug!(target: "db_txn", reason = why, "connection recycled without a ping");
                Err(RecycleError::message(why))
            }
            Verdict::Trust => {
                counters.ping_skipped(&mut slot.tracked.trusted);
                tracing::trace!(target: "db_txn", "ping skipped: used successfully just now");
                Ok(())
            }
            Verdict::Ping => {
                Counters::bump(&counters.pings);
                tracing::trace!(target: "db_txn", "ping");
                let t = &mut slot.tracked;
                pinging(&t.flags.stamp, t.conn.batch_execute(PING)).await?;
                slot.tracked.last_ok = clock::now();
                slot.tracked.epoch = epoch;
                Ok(())
            }
            Verdict::CheckRole => {
                Counters::bump(&counters.pings);
                let role_epoch = signals.role_epoch();
                let t = &mut slot.tracked;
                let read =
                    pooler::own_read(&mut t.conn, self.connector.pooler, async |c| c.role().await);
                let server = pinging(&t.flags.stamp, read).await?;
                role::settle(
                    self.policy.role,
                    &mut slot.tracked,
                    server,
                    (epoch, role_epoch),
                )
                .map_err(|m| {
                    RecycleError::Backend(ConnectError::Connect(
                        diesel::ConnectionError::BadConnection(m),
                    ))
                })
            }
        }
    }
}

/// Run a ping (or role check): the watchdog asks the server about a ping
/// sooner than about a statement, as a healthy server answers it at once.
async fn pinging<T>(
    stamp: &Stamp,
    ping: impl Future<Output = diesel::QueryResult<T>>,
) -> Result<T, RecycleError<ConnectError>> {
    stamp.pinging(true);
    let result = ping.await;
    stamp.pinging(false);
    result.map_err(|e| RecycleError::Backend(ConnectError::Setup(e)))
}
