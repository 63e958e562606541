//! deadpool's manager: opens connections with the [`Connector`] and applies
//! the checkout [`Policy`] (the sync pool's) in deadpool's recycle hook.

use deadpool::managed::{Metrics, RecycleError, RecycleResult};

use super::connect::{ConnectError, Connector};
use super::slot::Slot;
use crate::backend::AsyncTxnConnection;
use crate::pool::clock;
use crate::pool::policy::{Rules, Verdict};
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
        self.connector.open().await
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
        match self.policy.judge(&slot.tracked, signals, clock::now()) {
            Verdict::Broken => Err(RecycleError::message("connection lost earlier")),
            Verdict::Retire(why) => {
                Counters::bump(&counters.recycled);
                tracing::debug!(target: "db_txn", reason = why, "connection recycled without a ping");
                Err(RecycleError::message(why))
            }
            Verdict::Trust => {
                Counters::bump(&counters.pings_skipped);
                tracing::trace!(target: "db_txn", "ping skipped: used successfully just now");
                Ok(())
            }
            // An async pool takes any server (no role checks): a due role
            // check is a ping.
            Verdict::Ping | Verdict::CheckRole => {
                Counters::bump(&counters.pings);
                tracing::trace!(target: "db_txn", "ping");
                if let Some(watch) = &slot.tracked.watch {
                    watch.pinging(true);
                }
                let pinged = slot.tracked.conn.batch_execute(PING).await;
                if let Some(watch) = &slot.tracked.watch {
                    watch.pinging(false);
                }
                pinged.map_err(|e| RecycleError::Backend(ConnectError::Setup(e)))?;
                slot.tracked.last_ok = clock::now();
                slot.tracked.epoch = epoch;
                Ok(())
            }
        }
    }
}
