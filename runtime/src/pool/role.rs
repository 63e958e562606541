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
//! The sync pool (`manager.rs`, `connect.rs`) and the async pool
//! (`asynk/pool/`) both decide here; each backend's driver reads the role
//! with the same SQL, sync or async.
//!
//! [`Disconnect::ReadOnly`]: crate::Disconnect::ReadOnly

use std::time::Duration;

use super::clock::{self, Ms};

use super::signals::Signals;
use super::tracked::Tracked;
use crate::backend::ServerRole;
use crate::stats::Counters;

/// How long a replica connection is used without its role checked again.
pub(crate) const REPLICA_RECHECK: Duration = Duration::from_secs(1);
/// Between two connects to a server of the wrong role (a whole connect
/// each: not as often as to a port nobody listens on).
pub(crate) const ROLE_POLL: Duration = Duration::from_millis(10);

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
                    "waiting for a writable one (a pool meant for a read-only server is built \
                     with require_writable(false))"
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

/// After a role check of `t` found `server`: keep `t` (its role, and when
/// and in which epochs it was last known good, updated) or mark it for
/// closing and say why (the message of the checkout's error). `epoch` and
/// `role_epoch` are the pool's, read before the check.
pub(crate) fn settle<C>(
    wanted: Role,
    t: &mut Tracked<C>,
    server: ServerRole,
    (epoch, role_epoch): (u64, u64),
) -> Result<(), String> {
    if !wanted.accepts(server) {
        Counters::bump(&t.signals.counters.role_mismatches);
        t.flags.set_discard();
        tracing::info!(
            target: "db_txn",
            read_only = server.read_only,
            replica = server.replica,
            "connection on a server of the wrong role: closed"
        );
        return Err(wanted.refusal(server));
    }
    tracing::trace!(target: "db_txn", "role checked");
    let now = clock::now();
    t.server.role = server;
    t.last_ok = now;
    t.epoch = epoch;
    t.role_epoch = role_epoch;
    t.role_checked = now;
    Ok(())
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

    fn tracked(at: Ms) -> Tracked<()> {
        Tracked {
            conn: (),
            flags: std::sync::Arc::new(super::super::flags::Flags::default()),
            server: crate::backend::ServerInfo::default(),
            created: at,
            last_ok: at,
            ok: false,
            last_release: at,
            judged: at,
            trusted: false,
            direct: false,
            retire_idle: u64::MAX,
            epoch: 0,
            role_epoch: 0,
            role_checked: at,
            signals: std::sync::Arc::new(Signals::default()),
            watch: None,
            fd: None,
            protected: None,
        }
    }

    #[test]
    fn a_check_keeps_the_right_role_and_closes_the_wrong_one() {
        let mut t = tracked(Ms(0));
        assert_eq!(settle(Role::Primary, &mut t, PRIMARY, (3, 2)), Ok(()));
        assert_eq!(
            (t.epoch, t.role_epoch),
            (3, 2),
            "stamped with the pool's epochs"
        );
        assert!(t.role_checked.0 > 0 && t.last_ok.0 > 0, "stamped now");
        assert!(!t.flags.unusable());
        assert_eq!(t.signals.counters.snapshot(0, 0).role_mismatches, 0);

        let m = settle(Role::Primary, &mut t, FENCED, (4, 3)).expect_err("fenced");
        assert!(is_refusal(&m), "{m}");
        assert!(t.flags.unusable(), "never handed out again");
        assert_eq!(t.role_epoch, 2, "not stamped");
        assert_eq!(t.signals.counters.snapshot(0, 0).role_mismatches, 1);
        assert_eq!(
            settle(Role::Any, &mut tracked(Ms(1)), STANDBY, (0, 0)),
            Ok(())
        );
    }
}
