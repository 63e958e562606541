//! What a pool opens: the backend's reading of the URL (issue 9), a refusal
//! that every checkout reports when the URL is bad, and the connection that
//! keeps an in-memory database alive.

use std::sync::Mutex;

use crate::backend::{self, Target, TxnConnection};
use crate::Error;

/// Why a pool built with `build_lazy` can never give a connection: every
/// checkout fails at once with this instead of waiting out its timeout.
pub(super) enum Refusal {
    /// The backend refuses the URL: the reason.
    BadUrl(String),
    /// The in-memory database could not be opened: the driver's message.
    Connect(String),
}

impl Refusal {
    pub(super) fn error<C: TxnConnection>(&self, server: String) -> Error {
        match self {
            Refusal::BadUrl(reason) => Error::BadUrl {
                backend: C::BACKEND,
                url: server,
                reason: reason.clone(),
            },
            Refusal::Connect(message) => Error::Connect {
                backend: C::BACKEND,
                server,
                source: diesel::ConnectionError::BadConnection(message.clone()),
            },
        }
    }
}

/// A connection held for the pool's lifetime so that an in-memory
/// database, which SQLite frees when its last connection closes, outlives
/// the pooled connections r2d2 closes and opens (idle timeout, lifetime,
/// a discarded connection). It runs no statement.
pub(super) struct Anchor {
    _conn: Mutex<Box<dyn Send>>,
}

impl Anchor {
    /// Open the anchor when `target` asks for one.
    pub(super) fn open<C: TxnConnection>(
        target: &Target,
        url: &str,
    ) -> diesel::ConnectionResult<Option<Anchor>> {
        if !target.keep_open {
            return Ok(None);
        }
        let conn = backend::establish::<C>(url)?;
        Ok(Some(Anchor {
            _conn: Mutex::new(Box::new(conn)),
        }))
    }
}
