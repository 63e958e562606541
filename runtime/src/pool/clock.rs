//! A cheap monotonic clock for the per-call bookkeeping (last use, last
//! return, age, checkout time): milliseconds, read from
//! `CLOCK_MONOTONIC_COARSE` on Linux (the vDSO, no system call, a few
//! milliseconds of resolution, which is plenty for limits of half a second
//! and more). `Instant::now()` costs several times as much, and a call reads
//! the clock three or four times.

#[cfg(test)]
use std::time::Duration;

/// A moment, in milliseconds since an arbitrary origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Ms(pub u64);

impl Ms {
    /// How long ago `earlier` was, as of `self` (zero if it is later).
    #[cfg(test)]
    pub(crate) fn since(self, earlier: Ms) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    #[cfg(test)]
    pub(crate) fn minus(self, d: Duration) -> Ms {
        Ms(self
            .0
            .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)))
    }
}

#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn now() -> Ms {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-parameter; this clock cannot fail on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    // Never 0, so that 0 can stand for "never" in atomics.
    Ms(ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000 + 1)
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn now() -> Ms {
    use std::sync::OnceLock;
    use std::time::Instant;
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    Ms(u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_with_real_time() {
        let a = now();
        std::thread::sleep(Duration::from_millis(30));
        let b = now();
        let d = b.since(a);
        assert!(
            d >= Duration::from_millis(20) && d < Duration::from_secs(5),
            "{d:?}"
        );
        assert_eq!(a.since(b), Duration::ZERO);
        assert!(a.0 > 0);
    }
}
