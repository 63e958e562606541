//! Asking the server, over a connection of its own, whether the sessions the
//! watchdog is worried about are busy. A session the server reports idle (or
//! does not know) while our client waits for its answer has lost its link;
//! one it reports busy is a long statement that must not be cut; a server
//! that does not answer at all is frozen or unreachable.

use std::sync::Arc;
use std::time::Duration;

use super::gate::ConnectGate;

use crate::backend::{Dialect, TxnConnection};
use crate::classify::ErrorClass;

/// What the server said about one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// Running a statement (or waiting for a lock): keep waiting.
    Busy,
    /// Waiting for its client, or unknown to the server: the answer will
    /// never come.
    Idle,
}

/// Why a probe gave no states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProbeError {
    /// Nobody is listening there (the server is down or restarting).
    Unreachable(String),
    /// The server answered, with an error (too many connections, a denied
    /// privilege...): it is alive, but the states are unknown.
    Answered(String),
}

/// A probe of one pool's server.
pub(crate) trait SessionProbe: Send + Sync {
    /// The state of each of `ids` (server session ids). Blocking: called on
    /// a thread of its own, which the watchdog abandons if it hangs.
    fn states(&self, ids: &[u64]) -> Result<Vec<(u64, SessionState)>, ProbeError>;

    /// End server session `id` (its link is dead: the server would keep its
    /// transaction, and the transaction's locks, until it notices).
    fn end_session(&self, id: u64) -> Result<(), ProbeError>;
}

/// Probes over a connection opened with the pool's URL for each probe and
/// closed after it: probes are rare (a statement waiting for seconds), a
/// kept connection would hold a server slot and show in its session counts,
/// and after a failover (a multi-host URL, a moving address) it would still
/// be on the old server, which does not know the pool's sessions.
///
/// The probe connects under the pool's connect gate (`gate.rs`): the
/// watchdog ends a dead session at the very moment the call that lost it
/// reconnects, and a probe socket appearing while the pool connects could
/// not be told from the pool's. Waiting for its turn and connecting are
/// within the probe timeout, after which the watchdog gives up on the
/// answer anyway.
pub(crate) struct Monitor<C> {
    url: String,
    /// The pool's connect gate (`Connector::gate`).
    gate: Arc<ConnectGate>,
    /// `liveness_probe_timeout`: the longest a probe waits for its turn to
    /// connect, and holds the pool's connects back.
    limit: Duration,
    _conn: std::marker::PhantomData<fn() -> C>,
}

impl<C: TxnConnection> Monitor<C> {
    pub(crate) fn new(url: String, gate: Arc<ConnectGate>, limit: Duration) -> Arc<Self> {
        Arc::new(Monitor {
            url,
            gate,
            limit,
            _conn: std::marker::PhantomData,
        })
    }

    fn open(&self) -> Result<C, ProbeError> {
        let Some(_turn) = self.gate.probe(self.limit) else {
            // The pool's own connect hangs as long: nobody answers there.
            return Err(ProbeError::Unreachable(format!(
                "no turn to connect within {:?}: the pool's connect does not finish",
                self.limit
            )));
        };
        C::establish(&self.url).map_err(|e| {
            let text = e.to_string();
            match &e {
                diesel::ConnectionError::BadConnection(msg)
                    if <C::Dialect as Dialect>::unreachable(msg) =>
                {
                    ProbeError::Unreachable(text)
                }
                // The session's set-up statements failed: behind a pooler,
                // the pooler answers for a server that does not.
                diesel::ConnectionError::CouldntSetupConfiguration(e) => answered_or_gone::<C>(e),
                _ => ProbeError::Answered(text),
            }
        })
    }
}

/// A statement of the probe failed: a refusal by a live server, or a
/// disconnect (a pooler in front of a server that is down says so, for
/// example pgbouncer's "server login has been failing").
fn answered_or_gone<C: TxnConnection>(e: &diesel::result::Error) -> ProbeError {
    match crate::classify(C::BACKEND, e) {
        ErrorClass::Disconnect(_) => ProbeError::Unreachable(e.to_string()),
        _ => ProbeError::Answered(e.to_string()),
    }
}

impl<C: TxnConnection> SessionProbe for Monitor<C> {
    fn states(&self, ids: &[u64]) -> Result<Vec<(u64, SessionState)>, ProbeError> {
        let mut conn = self.open()?;
        let busy = conn
            .busy_sessions(ids)
            .map_err(|e| answered_or_gone::<C>(&e))?;
        Ok(ids
            .iter()
            .map(|id| {
                let state = if busy.contains(id) {
                    SessionState::Busy
                } else {
                    SessionState::Idle
                };
                (*id, state)
            })
            .collect())
    }

    fn end_session(&self, id: u64) -> Result<(), ProbeError> {
        let mut conn = self.open()?;
        conn.end_session(id)
            .map_err(|e| ProbeError::Answered(e.to_string()))
    }
}
