//! diesel instrumentation on every pooled connection: sees each statement's
//! outcome, so a disconnect inside the user's body is noticed whatever their
//! error type, and stamps statements for the stall watchdog.

use std::marker::PhantomData;
use std::sync::Arc;

use diesel::connection::{Instrumentation, InstrumentationEvent};

use super::fault::Point;
use super::flags::Flags;
use super::signals::Signals;
use super::Classifier;
use crate::backend::Dialect;
use crate::classify::{Disconnect, ErrorClass};

/// `D` is the connection's [`Dialect`], so that sync and async drivers of a
/// server share it.
///
/// `repr(C)`, aligned to a cache line (diesel boxes it): what every event
/// reads comes first, and all of it is one line.
#[repr(C, align(64))]
pub(crate) struct Observer<D> {
    pub flags: Arc<Flags>,
    /// Statements are stamped (in `flags.stamp`) for the watchdog: set
    /// only when they are watched for stalls.
    pub stamps: bool,
    /// Statements started on this connection (wrapping).
    pub seq: u32,
    /// The instrumentation diesel would have installed (`set_default_instrumentation`).
    pub inner: Option<Box<dyn Instrumentation>>,
    pub signals: Arc<Signals>,
    pub classifier: Option<Arc<Classifier>>,
    /// Where a retry-safety check may lose this connection.
    pub fault: Point,
    pub _conn: PhantomData<fn() -> D>,
}

impl<D: Dialect + 'static> Instrumentation for Observer<D> {
    // Called for every event of every statement (four or more per
    // transaction): a few loads and stores, and anything rare in one call
    // out of line made last, so that the common path needs no stack frame.
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        let rare = match &event {
            InstrumentationEvent::StartQuery { .. } => {
                // The stamp counts statements when they are watched; else a flag
                // says that one ran (for a raw user's connection).
                if self.stamps {
                    self.seq = self.seq.wrapping_add(1);
                    self.flags.stamp.statement_started(self.seq);
                } else {
                    self.flags.mark_used();
                }
                self.signals.faults.armed()
            }
            InstrumentationEvent::FinishQuery { error, .. } => {
                if self.stamps {
                    self.flags.stamp.statement_finished(self.seq);
                }
                error.is_some()
            }
            _ => false,
        };
        if rare || self.inner.is_some() {
            self.rare(event);
        }
    }
}

impl<D: Dialect> Observer<D> {
    /// What an event needs beyond the stamps: a fault to inject (tests), an
    /// error to classify, the user's own instrumentation to call.
    #[cold]
    #[inline(never)]
    fn rare(&mut self, event: InstrumentationEvent<'_>) {
        match &event {
            InstrumentationEvent::StartQuery { query, .. } if self.signals.faults.armed() => {
                self.fault.statement(query, &self.flags, &self.signals);
            }
            InstrumentationEvent::FinishQuery {
                error: Some(err), ..
            } => self.seen_error(err),
            _ => {}
        }
        if let Some(inner) = &mut self.inner {
            inner.on_connection_event(event);
        }
    }

    #[cold]
    #[inline(never)]
    fn seen_error(&self, err: &diesel::result::Error) {
        {
            if let diesel::result::Error::DatabaseError(kind, info) = err {
                if D::lock_busy(*kind, info.message()) {
                    self.flags.set_busy();
                }
            }
            let class = self
                .classifier
                .as_ref()
                .and_then(|rule| rule(err))
                .unwrap_or_else(|| crate::classify(D::BACKEND, err));
            match class {
                // The body's own write inside a `read_only` transaction.
                ErrorClass::Disconnect(Disconnect::ReadOnly) if self.flags.read_only_txn() => {}
                ErrorClass::Disconnect(d) => {
                    if self.flags.disconnect().is_none() {
                        self.signals.disconnect_seen();
                        if d == Disconnect::ReadOnly {
                            // The server changed role: the pool's other
                            // connections are checked for theirs.
                            self.signals.role_changed();
                        }
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
    }
}
