//! The pace of a pool's reconnect poll: how many failed connects a pool
//! may make while its server is down (the fault matrix's
//! `waiting_calls_take_turns` row, on the sync form and the async one), and
//! the pause the benchmark's recovery budget counts.

use std::time::Duration;

/// The pause of a pool's reconnect poll while its server is unreachable
/// (`RECONNECT_PAUSE` in the runtime's `pool/connect.rs`).
pub const PAUSE: Duration = Duration::from_millis(2);

/// Asserts that `failures` failed connects fit an outage that lasted
/// `outage`, `down` of it planned, with `callers` calls waiting: at least
/// one per 5 ms of `down` (a pool that tries every [`PAUSE`] in the first
/// second, with room for a loaded machine), and at most the callers' first
/// tries plus `per_pause` tries per pause (one on an async pool, whose
/// waiting checkouts take turns; r2d2's three connect threads on a sync
/// one).
///
/// # Panics
/// When `failures` is outside those bounds.
pub fn assert_paced(failures: u64, down: Duration, outage: Duration, callers: u64, per_pause: u64) {
    let fewest = down.as_millis() as u64 / 5;
    let pauses = (outage.as_millis() / PAUSE.as_millis()) as u64 + 2;
    let most = callers + per_pause * pauses;
    eprintln!(
        "{failures} failed connects in an outage of {outage:?} (expected {fewest} to {most})"
    );
    assert!(
        (fewest..=most).contains(&failures),
        "{failures} failed connects in an outage of {outage:?}: expected {fewest} to {most}"
    );
}
