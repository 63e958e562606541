//! The role a pool's connections must have, and when a connection's role is
//! checked again.
//!
//! A plain ping succeeds on a read-only node, so after a failover or a
//! demotion a pool would keep its connections to the old primary and every
//! write would fail there. Instead:
//!
//! * at connect, the server's role is read with the session's other settings
//!   (no extra round trip) and a server of the wrong role is refused like an
//!   unreachable one: the pool keeps trying, within the checkout timeout, until
//!   a server of the right role answers (libpq's `target_session_attrs` does
//!   the same for a PostgreSQL multi-host URL);
//! * a write refused as read-only ([`Disconnect::ReadOnly`]) moves the pool's
//!   role epoch: every connection last checked before then has its role
//!   checked (instead of a ping) before its next use;
//! * a replica's connections have their role checked at every ping and at
//!   least every [`REPLICA_RECHECK`] of use, since a promotion makes no error
//!   on a reading session.
//!
//! [`Disconnect::ReadOnly`]: crate::Disconnect::ReadOnly

use std::time::Duration;

use super::clock::Ms;

use super::signals::Signals;
use super::tracked::Tracked;
use crate::backend::ServerRole;

/// How long a replica connection is used without its role checked again.
pub(crate) const REPLICA_RECHECK: Duration = Duration::from_secs(1);

/// What a pool's connections must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Anything that answers.
    Any,
    /// A writable server.
    Primary,
    /// A replica (PostgreSQL standby, MariaDB/MySQL `read_only`).
    Replica,
}

impl Role {
    pub(crate) fn accepts(self, server: ServerRole) -> bool {
        match self {
            Role::Any => true,
            Role::Primary => !server.read_only,
            Role::Replica => server.replica,
        }
    }

    /// Why a server of `server`'s role is refused: the message of the
    /// connect error (recognised by [`is_refusal`]).
    pub(crate) fn refusal(self, server: ServerRole) -> String {
        let what = match (self, server.replica) {
            (Role::Replica, _) => "is not a replica (promoted, or not replicating)",
            (_, true) => "is read-only (a standby or replica)",
            (_, false) => "is read-only (demoted or fenced)",
        };
        format!(
            "{REFUSAL}: the server {what}; {}",
            match self {
                Role::Replica => "reads go to the primary meanwhile",
                _ => {
                    "waiting for a writable one (a pool meant for a read-only server takes \
                     PoolBuilder::require_writable(false))"
                }
            }
        )
    }
}

/// The start of every refusal message.
const REFUSAL: &str = "db_txn: wrong server role";

/// Whether a connect error is a refusal for the server's role.
pub(crate) fn is_refusal(message: &str) -> bool {
    message.starts_with(REFUSAL)
}

/// Whether `t`'s role must be checked before it is handed out.
#[inline(always)]
pub(crate) fn due<C>(role: Role, t: &Tracked<C>, signals: &Signals, now: Ms) -> bool {
    match role {
        Role::Any => false,
        Role::Primary => t.role_epoch != signals.role_epoch(),
        Role::Replica => {
            t.role_epoch != signals.role_epoch()
                || now.0.saturating_sub(t.role_checked.0) >= REPLICA_RECHECK.as_millis() as u64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRIMARY: ServerRole = ServerRole {
        read_only: false,
        replica: false,
    };
    const FENCED: ServerRole = ServerRole {
        read_only: true,
        replica: false,
    };
    const STANDBY: ServerRole = ServerRole {
        read_only: true,
        replica: true,
    };

    #[test]
    fn each_role_accepts_its_servers() {
        assert!(Role::Primary.accepts(PRIMARY));
        assert!(!Role::Primary.accepts(FENCED) && !Role::Primary.accepts(STANDBY));
        assert!(Role::Replica.accepts(STANDBY));
        assert!(!Role::Replica.accepts(PRIMARY) && !Role::Replica.accepts(FENCED));
        for r in [PRIMARY, FENCED, STANDBY] {
            assert!(Role::Any.accepts(r));
        }
    }

    #[test]
    fn refusals_say_why_and_are_recognised() {
        let m = Role::Primary.refusal(FENCED);
        assert!(is_refusal(&m), "{m}");
        assert!(
            m.contains("demoted") && m.contains("require_writable(false)"),
            "{m}"
        );
        let m = Role::Replica.refusal(PRIMARY);
        assert!(is_refusal(&m) && m.contains("not a replica"), "{m}");
        assert!(!is_refusal("Connection refused"));
    }
}
