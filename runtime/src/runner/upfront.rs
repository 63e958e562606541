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

static WRITERS: [AtomicUsize; SLOTS] = [const { AtomicUsize::new(0) }; SLOTS];

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
    let key = key(name);
    let start = home(key);
    for i in 0..PROBES {
        match WRITERS[(start + i) % SLOTS].load(Relaxed) {
            0 => return false,
            k if k == key => return true,
            _ => {}
        }
    }
    false
}

/// Remember that function `name` needs the write lock.
pub(super) fn remember(name: &'static str) {
    let key = key(name);
    let start = home(key);
    for i in 0..PROBES {
        let slot = &WRITERS[(start + i) % SLOTS];
        match slot.compare_exchange(0, key, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(k) if k == key => return,
            Err(_) => {}
        }
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
}
