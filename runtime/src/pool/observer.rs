//! diesel instrumentation on every pooled connection: sees each statement's
//! outcome, so a disconnect inside the user's body is noticed whatever their
//! error type, and stamps statements for the stall watchdog.

use std::marker::PhantomData;
use std::sync::Arc;

use diesel::connection::{Instrumentation, InstrumentationEvent};

use super::flags::Flags;
use super::signals::Signals;
use super::watchdog::Watch;
use super::Classifier;
use crate::backend::Dialect;
use crate::classify::ErrorClass;

/// `D` is the connection's [`Dialect`], so that sync and async drivers of a
/// server share it.
pub(crate) struct Observer<D> {
    pub flags: Arc<Flags>,
    pub signals: Arc<Signals>,
    pub classifier: Option<Arc<Classifier>>,
    /// The instrumentation diesel would have installed (`set_default_instrumentation`).
    pub inner: Option<Box<dyn Instrumentation>>,
    /// Set only when statements are watched for stalls.
    pub watch: Option<Arc<Watch>>,
    /// Statements started on this connection (wrapping).
    pub seq: u32,
    pub _conn: PhantomData<fn() -> D>,
}

impl<D: Dialect + 'static> Instrumentation for Observer<D> {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let Some(watch) = &self.watch {
            match &event {
                InstrumentationEvent::StartQuery { .. } => {
                    self.seq = self.seq.wrapping_add(1);
                    watch.statement_started(self.seq);
                }
                InstrumentationEvent::FinishQuery { .. } => watch.statement_finished(),
                _ => {}
            }
        }
        if let InstrumentationEvent::FinishQuery {
            error: Some(err), ..
        } = &event
        {
            let class = self
                .classifier
                .as_ref()
                .and_then(|rule| rule(err))
                .unwrap_or_else(|| crate::classify(D::BACKEND, err));
            match class {
                ErrorClass::Disconnect(d) => {
                    if self.flags.disconnect().is_none() {
                        self.signals.disconnect_seen();
                        tracing::debug!(
                            target: "db_txn",
                            kind = %d,
                            error = %err,
                            "disconnect seen on a statement: the connection will not be reused"
                        );
                    }
                    self.flags.set_disconnect(d, Some(err));
                }
                ErrorClass::Conflict => self.flags.set_conflict(),
                ErrorClass::Other => {}
            }
        }
        if let Some(inner) = &mut self.inner {
            inner.on_connection_event(event);
        }
    }
}
