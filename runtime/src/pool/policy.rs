//! The checkout policy: when a connection is handed out as it is, pinged
//! first, or retired without a ping.
//!
//! - A connection on which a disconnect was seen is never handed out again.
//! - A connection used successfully within `ping_window` is handed out without
//!   a ping, unless a disconnect was seen on the pool since (the pool epoch
//!   moved): one dead connection usually means a restart, so every older idle
//!   connection is pinged at its next checkout.
//! - A connection last known healthy before the watchdog cut a link that
//!   stopped answering is retired without a ping (its path is suspect, and a
//!   ping on a dead path would hang).
//! - A connection idle longer than the server's idle limit (MariaDB/MySQL
//!   `wait_timeout`, read at connect, minus a margin), `max_idle`, or older
//!   than `max_lifetime` is retired without a ping.
//! - A connection whose role is due for a check (see [`super::role`]) has its
//!   role checked, which is a ping too.

use std::time::Duration;

use super::clock::Ms;
use super::role::{self, Role};
use super::signals::Signals;
use super::tracked::Tracked;

/// Limits after which a connection is pinged or retired.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    pub ping_window: Duration,
    pub max_idle: Option<Duration>,
    pub max_lifetime: Option<Duration>,
    /// The role the connections must have.
    pub role: Role,
}

/// The same limits in milliseconds of the pool's clock, so that judging a
/// checkout is a few integer comparisons.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) role: Role,
    ping_window: u64,
    max_idle: u64,
    max_lifetime: u64,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Policy {
    /// `embedded`: the database is a library in this process (SQLite): a
    /// connection to it cannot go stale, so it is never pinged.
    pub(crate) fn rules(&self, embedded: bool) -> Rules {
        Rules {
            role: self.role,
            ping_window: if embedded {
                u64::MAX
            } else {
                ms(self.ping_window)
            },
            max_idle: self.max_idle.map_or(u64::MAX, ms),
            max_lifetime: self.max_lifetime.map_or(u64::MAX, ms),
        }
    }
}

/// After how long idle a connection to a server that closes idle
/// connections after `limit` is retired: 10 % before it, at least 1 s
/// before, at most half of it (for tiny test limits).
pub(crate) fn retire_before(limit: Option<Duration>) -> u64 {
    limit.map_or(u64::MAX, |limit| ms(limit - idle_margin(limit)))
}

/// What to do with an idle connection at checkout.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Broken: close it.
    Broken,
    /// Retire it without a ping, for this reason.
    Retire(&'static str),
    /// Hand it out as it is.
    Trust,
    /// Ping it first.
    Ping,
    /// Check its server's role first (a ping that reads the role).
    CheckRole,
}

impl Rules {
    #[inline]
    pub(crate) fn judge<C>(&self, t: &Tracked<C>, signals: &Signals, now: Ms) -> Verdict {
        if t.flags.unusable() {
            return Verdict::Broken;
        }
        if let Some(why) = self.expired(t, now) {
            return Verdict::Retire(why);
        }
        if signals.distrusts(t.last_ok) {
            return Verdict::Retire("idle since before a connection of the pool was lost");
        }
        if role::due(self.role, t, signals, now) {
            return Verdict::CheckRole;
        }
        if t.epoch == signals.epoch() && now.0.saturating_sub(t.last_ok.0) < self.ping_window {
            Verdict::Trust
        } else if self.role == Role::Replica {
            // The round trip is paid anyway: a promoted replica answers a
            // plain ping.
            Verdict::CheckRole
        } else {
            Verdict::Ping
        }
    }

    fn expired<C>(&self, t: &Tracked<C>, now: Ms) -> Option<&'static str> {
        let idle = now.0.saturating_sub(t.last_release.0);
        if idle >= t.retire_idle {
            return Some("idle close to the server's wait_timeout");
        }
        if idle >= self.max_idle {
            return Some("idle longer than max_idle");
        }
        if now.0.saturating_sub(t.created.0) >= self.max_lifetime {
            return Some("older than max_lifetime");
        }
        None
    }
}

/// How long before the server's idle limit a connection is retired.
fn idle_margin(limit: Duration) -> Duration {
    // 10 %, at least 1 s, at most half the limit (for tiny test limits).
    (limit / 10).max(Duration::from_secs(1)).min(limit / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_ten_percent_within_bounds() {
        assert_eq!(
            idle_margin(Duration::from_secs(28800)),
            Duration::from_secs(2880)
        );
        assert_eq!(idle_margin(Duration::from_secs(5)), Duration::from_secs(1));
        assert_eq!(
            idle_margin(Duration::from_millis(1000)),
            Duration::from_millis(500)
        );
    }
}

#[cfg(test)]
mod judge_tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::ServerInfo;
    use crate::classify::Disconnect;
    use crate::pool::flags::Flags;
    use crate::pool::signals::Signals;

    fn tracked(age: Duration, idle: Duration, since_ok: Duration, epoch: u64) -> (Tracked<()>, Ms) {
        let now = Ms(10_000_000);
        let t = Tracked {
            conn: (),
            flags: Arc::new(Flags::default()),
            server: ServerInfo {
                idle_limit: Some(Duration::from_secs(60)),
                ..ServerInfo::default()
            },
            created: now.minus(age),
            last_ok: now.minus(since_ok),
            ok: false,
            last_release: now.minus(idle),
            judged: now.minus(idle),
            trusted: false,
            direct: false,
            retire_idle: retire_before(Some(Duration::from_secs(60))),
            epoch,
            role_epoch: 0,
            role_checked: now,
            signals: Arc::new(Signals::default()),
            watch: None,
            fd: None,
            protected: None,
        };
        (t, now)
    }

    const POLICY_CONFIG: Policy = Policy {
        ping_window: Duration::from_millis(500),
        max_idle: Some(Duration::from_secs(30)),
        max_lifetime: Some(Duration::from_secs(1800)),
        role: Role::Primary,
    };
    static POLICY: std::sync::LazyLock<Rules> =
        std::sync::LazyLock::new(|| POLICY_CONFIG.rules(false));

    fn signals(epoch: u64) -> Signals {
        let s = Signals::default();
        s.epoch.store(epoch, std::sync::atomic::Ordering::Relaxed);
        s
    }

    #[test]
    fn trusts_only_a_recent_success_in_the_same_epoch() {
        let ms = Duration::from_millis;
        let (t, now) = tracked(ms(10_000), ms(100), ms(100), 3);
        assert_eq!(POLICY.judge(&t, &signals(3), now), Verdict::Trust);
        assert_eq!(
            POLICY.judge(&t, &signals(4), now),
            Verdict::Ping,
            "a disconnect since"
        );
        let (t, now) = tracked(ms(10_000), ms(600), ms(600), 3);
        assert_eq!(
            POLICY.judge(&t, &signals(3), now),
            Verdict::Ping,
            "outside the window"
        );
    }

    #[test]
    fn retires_what_was_idle_before_a_link_was_cut() {
        let s = Signals::default();
        s.link_cut();
        std::thread::sleep(Duration::from_millis(20));
        let now = crate::pool::clock::now();
        let (mut t, _) = tracked(Duration::ZERO, Duration::ZERO, Duration::ZERO, 0);
        (t.created, t.last_release, t.last_ok) = (now, now, Ms(1));
        assert_eq!(
            POLICY.judge(&t, &s, now),
            Verdict::Retire("idle since before a connection of the pool was lost")
        );
        t.last_ok = now;
        assert_eq!(POLICY.judge(&t, &s, now), Verdict::Trust);
    }

    #[test]
    fn retires_what_was_idle_before_a_call_lost_its_connection() {
        let s = Signals::default();
        let now = crate::pool::clock::now();
        let (mut t, _) = tracked(Duration::ZERO, Duration::ZERO, Duration::ZERO, 0);
        (t.created, t.last_release, t.last_ok) = (now, now, Ms(1));
        assert_eq!(
            POLICY.judge(&t, &s, now),
            Verdict::Ping,
            "nothing lost yet: pinged, not retired"
        );
        s.call_lost_its_connection();
        assert_eq!(
            POLICY.judge(&t, &s, now),
            Verdict::Retire("idle since before a connection of the pool was lost")
        );
        std::thread::sleep(Duration::from_millis(20));
        let later = crate::pool::clock::now();
        t.last_ok = later;
        assert_eq!(POLICY.judge(&t, &s, later), Verdict::Trust, "used since");
        assert_eq!(
            s.counters
                .stalls_cut
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn retires_before_the_limits_and_never_reuses_a_broken_one() {
        let s = Duration::from_secs;
        let none = Signals::default();
        let (t, now) = tracked(s(100), s(55), s(55), 0);
        assert_eq!(
            POLICY.judge(&t, &none, now),
            Verdict::Retire("idle close to the server's wait_timeout")
        );
        let (t, now) = tracked(s(2000), s(1), s(1), 0);
        assert_eq!(
            POLICY.judge(&t, &none, now),
            Verdict::Retire("older than max_lifetime")
        );
        let (t, now) = tracked(s(100), s(1), s(0), 0);
        t.flags.set_disconnect(Disconnect::Lost, None);
        assert_eq!(POLICY.judge(&t, &none, now), Verdict::Broken);
    }
}

#[cfg(test)]
mod role_tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::ServerInfo;
    use crate::pool::flags::Flags;

    fn fresh(now: Ms) -> Tracked<()> {
        Tracked {
            conn: (),
            flags: Arc::new(Flags::default()),
            server: ServerInfo::default(),
            created: now,
            last_ok: now,
            ok: false,
            last_release: now,
            judged: now,
            trusted: false,
            direct: false,
            retire_idle: u64::MAX,
            epoch: 0,
            role_epoch: 0,
            role_checked: now,
            signals: Arc::new(Signals::default()),
            watch: None,
            fd: None,
            protected: None,
        }
    }

    fn policy(role: Role) -> Rules {
        Policy {
            ping_window: Duration::from_millis(500),
            max_idle: None,
            max_lifetime: None,
            role,
        }
        .rules(false)
    }

    #[test]
    fn a_refused_write_makes_every_older_connection_check_its_role() {
        let now = Ms(1_000_000);
        let (t, s) = (fresh(now), Signals::default());
        assert_eq!(policy(Role::Primary).judge(&t, &s, now), Verdict::Trust);
        s.role_changed();
        assert_eq!(policy(Role::Primary).judge(&t, &s, now), Verdict::CheckRole);
        assert_eq!(
            policy(Role::Any).judge(&t, &s, now),
            Verdict::Trust,
            "a pool that takes any server never checks"
        );
    }

    #[test]
    fn a_replica_is_checked_at_every_ping_and_every_second_of_use() {
        let now = Ms(1_000_000);
        let (t, s) = (fresh(now), Signals::default());
        let replica = policy(Role::Replica);
        assert_eq!(replica.judge(&t, &s, now), Verdict::Trust);
        let later = Ms(now.0 + 600);
        assert_eq!(replica.judge(&t, &s, later), Verdict::CheckRole);
        assert_eq!(policy(Role::Primary).judge(&t, &s, later), Verdict::Ping);
        let mut busy = fresh(now);
        let recheck = Ms(now.0 + role::REPLICA_RECHECK.as_millis() as u64);
        busy.last_ok = recheck;
        assert_eq!(
            replica.judge(&busy, &s, recheck),
            Verdict::CheckRole,
            "used all along, but not checked for a second"
        );
    }
}
