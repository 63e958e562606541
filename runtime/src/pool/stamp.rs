//! What the watchdog reads of one connection: the statement in flight and
//! since when, and who holds the connection since when.
//!
//! It lives inside the connection's [`Flags`](super::flags::Flags), on the
//! same cache line: the instrumentation writes it at every statement's start
//! and end, the runner reads the flags right after each statement, and the
//! checkout writes both. One line instead of three (the flags, the watch,
//! the watchdog's clock), each fetched again after every round trip once the
//! server has run on the client's CPU (BENCHMARKS.md, "Lines of data").
//!
//! Times are the watchdog's ticks, not a clock: the watchdog copies its tick
//! into every watched connection's stamp each period, so that a statement
//! is stamped with two relaxed operations on this line and nothing else.
//! The encoding is this file's alone: the watchdog reads the stamp through
//! the methods below.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// The watchdog's tick is kept in 31 bits (the stamp's low bit says whether
/// a statement is in flight).
pub(crate) const TICK_MASK: u32 = 0x7fff_ffff;

#[derive(Default)]
pub(crate) struct Stamp {
    /// The statement in flight: `seq << 32 | tick << 1 | 1`; the low bit is
    /// clear when none is (then the tick is when the last one got its
    /// answer). 0 until the first statement is stamped.
    statement: AtomicU64,
    /// Who checked it out: a `&'static str` packed in one word (see
    /// [`pack`]), so that a checkout is two plain stores, no lock.
    held_by: AtomicU64,
    /// The watchdog's tick, as it last copied it here (0 when unwatched).
    tick: AtomicU32,
    /// The tick when the connection was checked out (0 while idle).
    held_since: AtomicU32,
    /// The statement in flight is the checkout ping.
    pinging: AtomicBool,
    leak_reported: AtomicBool,
}

impl Stamp {
    #[inline]
    fn tick(&self) -> u32 {
        self.tick.load(Relaxed) & TICK_MASK
    }

    /// Stamp a new statement; `seq` is the connection's statement counter.
    #[inline]
    pub(crate) fn statement_started(&self, seq: u32) {
        let tick = self.tick();
        self.statement
            .store(u64::from(seq) << 32 | u64::from(tick) << 1 | 1, Relaxed);
    }

    /// The statement `seq` got its answer: the stamp keeps when (low bit
    /// clear: nothing in flight).
    #[inline]
    pub(crate) fn statement_finished(&self, seq: u32) {
        let tick = self.tick();
        self.statement
            .store(u64::from(seq) << 32 | u64::from(tick) << 1, Relaxed);
    }

    /// The connection's statement counter, as last stamped (0 when its
    /// statements are not stamped).
    #[inline]
    pub(crate) fn statements(&self) -> u32 {
        (self.statement.load(Relaxed) >> 32) as u32
    }

    /// Whole watchdog periods since the last statement got its answer (0
    /// when one is in flight, none was stamped, or none is watched).
    #[inline]
    pub(crate) fn quiet_ticks(&self) -> u32 {
        let state = self.statement.load(Relaxed);
        if state & 1 == 1 || state == 0 {
            return 0;
        }
        elapsed(self.tick(), (state as u32) >> 1)
    }

    #[inline]
    pub(crate) fn pinging(&self, on: bool) {
        self.pinging.store(on, Relaxed);
    }

    #[inline]
    pub(crate) fn checked_out(&self, by: &'static str) {
        self.held_by.store(pack(by), Relaxed);
        self.held_since
            .store(self.tick.load(Relaxed).max(1), Relaxed);
        if self.leak_reported.load(Relaxed) {
            self.leak_reported.store(false, Relaxed);
        }
    }

    #[inline]
    pub(crate) fn checked_in(&self) {
        self.held_since.store(0, Relaxed);
    }

    /// Who holds the connection, as [`checked_out`](Self::checked_out) was told.
    pub(super) fn held_by(&self) -> &'static str {
        unpack(self.held_by.load(Relaxed))
    }

    /// The watchdog's tick, copied here (masked as every tick is).
    pub(super) fn set_tick(&self, tick: u32) {
        self.tick.store(tick & TICK_MASK, Relaxed);
    }

    /// The statement in flight, if any: its number and the tick it started.
    pub(super) fn in_flight(&self) -> Option<(u32, u32)> {
        let state = self.statement.load(Relaxed);
        (state & 1 == 1).then_some(((state >> 32) as u32, (state as u32) >> 1))
    }

    /// Forget the statement in flight (its socket was shut down).
    pub(super) fn clear(&self) {
        self.statement.store(0, Relaxed);
    }

    /// The statement in flight is the checkout ping.
    pub(super) fn is_pinging(&self) -> bool {
        self.pinging.load(Relaxed)
    }

    /// Ticks since the checkout as of tick `now`, if it is checked out.
    pub(super) fn held_ticks(&self, now: u32) -> Option<u32> {
        match self.held_since.load(Relaxed) {
            0 => None,
            since => Some(elapsed(now, since)),
        }
    }

    /// `true` the first time it is called since the last checkout.
    pub(super) fn first_leak_report(&self) -> bool {
        !self.leak_reported.swap(true, Relaxed)
    }
}

/// Ticks from `since` to `now`, both as the stamp keeps them (31 bits): the
/// one place a difference of ticks is taken, so it wraps the same way
/// everywhere.
#[inline]
pub(super) fn elapsed(now: u32, since: u32) -> u32 {
    now.wrapping_sub(since) & TICK_MASK
}

/// A `&'static str` in one word: its address (user-space addresses fit in 48
/// bits on the 64-bit systems this runs on) and its length (up to 65535
/// bytes). Anything else packs to 0, which reads back as "unknown".
fn pack(s: &'static str) -> u64 {
    let (addr, len) = (s.as_ptr() as usize as u64, s.len() as u64);
    if addr >> 48 == 0 && len >> 16 == 0 {
        addr << 16 | len
    } else {
        0
    }
}

fn unpack(word: u64) -> &'static str {
    let (addr, len) = ((word >> 16) as usize, (word & 0xffff) as usize);
    if word == 0 {
        return "unknown";
    }
    // SAFETY: `word` came from `pack` of a `&'static str` (one atomic
    // word, never torn): this is that string's address and length.
    unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(addr as *const u8, len)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_str_survives_packing() {
        for s in ["db_txn::Pool::get", "app::orders::place_order", ""] {
            let w = pack(s);
            if s.is_empty() {
                assert_eq!(unpack(w), "");
            } else {
                assert_eq!(unpack(w), s);
            }
        }
        assert_eq!(unpack(0), "unknown");
    }

    #[test]
    fn quiet_ticks_count_from_the_last_answer() {
        let s = Stamp::default();
        s.tick.store(10, Relaxed);
        assert_eq!(s.quiet_ticks(), 0, "nothing stamped yet");
        s.statement_started(1);
        s.tick.store(13, Relaxed);
        assert_eq!(s.quiet_ticks(), 0, "a statement in flight");
        s.statement_finished(1);
        assert_eq!(s.statements(), 1);
        s.tick.store(15, Relaxed);
        assert_eq!(s.quiet_ticks(), 2);
    }

    #[test]
    fn a_checkout_records_the_holder_and_the_tick() {
        let s = Stamp::default();
        s.tick.store(7, Relaxed);
        s.leak_reported.store(true, Relaxed);
        s.checked_out("app::f");
        assert_eq!(s.held_since.load(Relaxed), 7);
        assert_eq!(s.held_by(), "app::f");
        assert!(
            !s.leak_reported.load(Relaxed),
            "a new checkout may be reported again"
        );
        s.checked_in();
        assert_eq!(s.held_since.load(Relaxed), 0);
        assert_eq!(s.held_ticks(9), None, "idle: not held");
    }

    #[test]
    fn ticks_past_31_bits_compare_masked() {
        // The watchdog's clock is a `u32`; the stamp keeps 31 bits of it.
        let s = Stamp::default();
        s.set_tick(0x8000_0005);
        s.checked_out("app::f");
        assert_eq!(s.held_ticks(0x8000_0007), Some(2));
        s.statement_started(3);
        assert_eq!(s.in_flight(), Some((3, 5)));
        s.clear();
        assert_eq!(s.in_flight(), None);
    }
}
