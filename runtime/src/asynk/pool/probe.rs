//! The watchdog's liveness probe for an async pool: the same question as
//! `pool/probe.rs` ("is this session running a statement?"), asked over a
//! diesel-async connection of its own. The watchdog calls probes on a
//! thread of their own and abandons one that hangs, so each probe runs on a
//! current-thread runtime of its own, on that thread.

use std::marker::PhantomData;
use std::sync::Arc;

use super::connect::ConnectError;
use crate::backend::{AsyncTxnConnection, Dialect};
use crate::pool::probe::{ProbeError, SessionProbe, SessionState};

pub(crate) struct AsyncMonitor<C> {
    url: String,
    _conn: PhantomData<fn() -> C>,
}

impl<C: AsyncTxnConnection> AsyncMonitor<C> {
    pub(crate) fn new(url: String) -> Arc<Self> {
        Arc::new(AsyncMonitor {
            url,
            _conn: PhantomData,
        })
    }
}

impl<C: AsyncTxnConnection> SessionProbe for AsyncMonitor<C> {
    fn states(&self, ids: &[u64]) -> Result<Vec<(u64, SessionState)>, ProbeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProbeError::Answered(format!("no runtime for the probe: {e}")))?;
        let ids = ids.to_vec();
        runtime.block_on(async {
            let mut conn = C::establish(&self.url).await.map_err(|e| {
                let e = ConnectError::Connect(e);
                if e.unreachable::<C>() {
                    ProbeError::Unreachable(e.to_string())
                } else {
                    ProbeError::Answered(e.to_string())
                }
            })?;
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ProbeError::Answered(format!("no runtime for the probe: {e}")))?;
        runtime.block_on(async {
            let mut conn = C::establish(&self.url)
                .await
                .map_err(|e| ProbeError::Answered(ConnectError::Connect(e).to_string()))?;
            conn.batch_execute(&sql)
                .await
                .map_err(|e| ProbeError::Answered(e.to_string()))
        })
    }
}
