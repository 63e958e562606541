//! On SQLite, which functions take the write lock at BEGIN.
//!
//! `BEGIN IMMEDIATE` makes a function that only reads pay for a lock it does
//! not need (it waits behind any writer, and costs more than `BEGIN` even
//! alone). So a transaction begins deferred, unless its function was seen to
//! need the lock: one that read, then failed to write with `SQLITE_BUSY`
//! because another connection wrote meanwhile (SQLite cannot upgrade a
//! stale snapshot). That attempt is rolled back and begun again at once with
//! `BEGIN IMMEDIATE` (the caller sees no error), and the function is
//! remembered here, so that its later calls begin `IMMEDIATE` straight away.
//!
//! The table is a fixed array of atomics keyed by the address of the
//! function's name (a `&'static str` the macro writes): no lock, no
//! allocation, a few instructions per SQLite call. A full table only means
//! a function is not remembered: it still never fails, it just begins
//! deferred again.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

const SLOTS: usize = 1024;
const PROBES: usize = 8;

/// Open addressing over `SLOTS` atomics: a key, or 0 for an empty slot.
struct Table([AtomicUsize; SLOTS]);

static WRITERS: Table = Table::new();

fn key(name: &'static str) -> usize {
    // Never 0 (an empty slot): a `&'static str`'s address is not null.
    name.as_ptr() as usize
}

fn home(key: usize) -> usize {
    // Fibonacci hashing of the address, whose low bits are alignment.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> 20) % SLOTS
}

/// Function `name` was seen to need the write lock.
#[inline]
pub(super) fn needed(name: &'static str) -> bool {
    WRITERS.holds(name)
}

/// Remember that function `name` needs the write lock; `false` if its
/// probe sequence is full (it is then not remembered).
pub(super) fn remember(name: &'static str) -> bool {
    WRITERS.insert(name)
}

impl Table {
    const fn new() -> Self {
        Table([const { AtomicUsize::new(0) }; SLOTS])
    }

    /// Inline, the home slot only: in a program where no function was
    /// remembered (or none near this one's home), that is one load. The
    /// rest of the probe sequence is out of line.
    #[inline]
    fn holds(&self, name: &'static str) -> bool {
        let key = key(name);
        let start = home(key);
        match self.0[start].load(Relaxed) {
            0 => false,
            k if k == key => true,
            _ => self.probe_on(key, start),
        }
    }

    #[cold]
    #[inline(never)]
    fn probe_on(&self, key: usize, start: usize) -> bool {
        for i in 1..PROBES {
            match self.0[(start + i) % SLOTS].load(Relaxed) {
                0 => return false,
                k if k == key => return true,
                _ => {}
            }
        }
        false
    }

    fn insert(&self, name: &'static str) -> bool {
        let key = key(name);
        let start = home(key);
        for i in 0..PROBES {
            let slot = &self.0[(start + i) % SLOTS];
            match slot.compare_exchange(0, key, Relaxed, Relaxed) {
                Ok(_) => return true,
                Err(k) if k == key => return true,
                Err(_) => {}
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_it_was_told() {
        static A: &str = "tests::upfront::a";
        static B: &str = "tests::upfront::b";
        assert!(!needed(A) && !needed(B));
        remember(A);
        remember(A);
        assert!(needed(A) && !needed(B));
    }

    #[test]
    fn finds_names_past_their_home_slot() {
        // More names than slots: homes collide, probe sequences fill up.
        let names: Vec<&'static str> = (0..2 * SLOTS)
            .map(|i| &*Box::leak(format!("tests::upfront::many::{i}").into_boxed_str()))
            .collect();
        // A table of its own: the program's is shared with other tests.
        let table = Table::new();
        let (kept, dropped): (Vec<&'static str>, Vec<_>) =
            names.iter().partition(|n| table.insert(n));
        let displaced = kept
            .iter()
            .filter(|n| table.0[home(key(n))].load(Relaxed) != key(n));
        assert!(
            displaced.count() > 0,
            "no name was stored past its home slot"
        );
        assert!(!dropped.is_empty(), "no probe sequence filled up");
        assert!(
            kept.iter().all(|n| table.holds(n)),
            "a remembered name was not found"
        );
        assert!(
            !dropped.iter().any(|n| table.holds(n)),
            "a name not stored was found"
        );
    }
}
