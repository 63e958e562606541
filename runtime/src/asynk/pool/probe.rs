//! The watchdog's liveness probe for an async pool: the same question as
//! `pool/probe.rs` ("is this session running a statement?"), asked over a
//! diesel-async connection of its own. The watchdog calls probes on a
//! thread of their own and abandons one that hangs, so each probe runs on a
//! current-thread runtime of its own, on that thread.
//!
//! The probe connects under the pool's connect lock: a socket that appears
//! while the pool opens a connection must be that connection's (see
//! `pool/socket.rs`), and the watchdog ends a dead session over a probe
//! connection at the very moment the call that lost it reconnects. Without
//! the lock the retry's socket could not be told apart from the probe's,
//! and the retry would run unwatched. The lock is held for the connect
//! only, and the wait for it and the connect together are bounded by the
//! probe timeout, after which the watchdog gives up on the answer anyway.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use super::connect::ConnectError;
use crate::backend::{AsyncTxnConnection, Dialect};
use crate::pool::probe::{ProbeError, SessionProbe, SessionState};

pub(crate) struct AsyncMonitor<C> {
    url: String,
    /// The pool's connect lock (`Connector::serial`).
    serial: Arc<tokio::sync::Mutex<()>>,
    /// `liveness_probe_timeout`: the longest a probe's connect may take.
    limit: Duration,
    _conn: PhantomData<fn() -> C>,
}

impl<C: AsyncTxnConnection> AsyncMonitor<C> {
    pub(crate) fn new(
        url: String,
        serial: Arc<tokio::sync::Mutex<()>>,
        limit: Duration,
    ) -> Arc<Self> {
        Arc::new(AsyncMonitor {
            url,
            serial,
            limit,
            _conn: PhantomData,
        })
    }

    /// A connection of the probe, opened under the pool's connect lock.
    async fn open(&self) -> Result<C, ProbeError> {
        let connect = async {
            let _one_at_a_time = self.serial.lock().await;
            C::establish(&self.url).await
        };
        match tokio::time::timeout(self.limit, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => {
                let e = ConnectError::Connect(e);
                if e.unreachable::<C>() {
                    Err(ProbeError::Unreachable(e.to_string()))
                } else {
                    Err(ProbeError::Answered(e.to_string()))
                }
            }
            Err(_) => Err(ProbeError::Unreachable(format!(
                "no connection within {:?}",
                self.limit
            ))),
        }
    }

    /// Runs `f` on a current-thread runtime of its own.
    fn on_own_runtime<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ProbeError>>,
    ) -> Result<T, ProbeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProbeError::Answered(format!("no runtime for the probe: {e}")))?;
        runtime.block_on(f)
    }
}

impl<C: AsyncTxnConnection> SessionProbe for AsyncMonitor<C> {
    fn states(&self, ids: &[u64]) -> Result<Vec<(u64, SessionState)>, ProbeError> {
        let ids = ids.to_vec();
        self.on_own_runtime(async {
            let mut conn = self.open().await?;
            if ids.is_empty() {
                // No session to ask about (behind a transaction pooler):
                // only whether the server answers, as a simple query.
                conn.batch_execute("SELECT 1")
                    .await
                    .map_err(|e| ProbeError::Answered(e.to_string()))?;
                return Ok(Vec::new());
            }
            let busy = conn
                .busy_sessions(ids.clone())
                .await
                .map_err(|e| ProbeError::Answered(e.to_string()))?;
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
        })
    }

    fn end_session(&self, id: u64) -> Result<(), ProbeError> {
        let Some(sql) = <C::Dialect as Dialect>::end_session_sql(id) else {
            return Ok(());
        };
        self.on_own_runtime(async {
            let mut conn = self.open().await?;
            conn.batch_execute(&sql)
                .await
                .map_err(|e| ProbeError::Answered(e.to_string()))
        })
    }
}
