//! PostgreSQL's role and replication positions: read-only and standby from
//! `transaction_read_only` and `pg_is_in_recovery()`, a commit's position as
//! a WAL location, and a standby's progress as its replay location.

use std::time::{Duration, Instant};

/// The role check of a pooled connection. Outside a transaction block
/// `transaction_read_only` is what a new transaction would get: `on` on a
/// standby and on a primary fenced with `default_transaction_read_only`.
pub(crate) const ROLE_SQL: &str = "SELECT pg_is_in_recovery() AS standby, \
     current_setting('transaction_read_only') = 'on' AS read_only";

/// After a COMMIT: the end of the WAL inserted so far, at or past the
/// commit record (even with `synchronous_commit = off`, where the record
/// may not be written yet), with what [`commit_end`] needs to read it.
pub(crate) const POSITION_SQL: &str =
    "SELECT CAST(pg_current_wal_insert_lsn() - '0/0'::pg_lsn AS BIGINT) AS lsn, \
     pg_size_bytes(current_setting('wal_segment_size')) AS segment, \
     CAST(current_setting('wal_block_size') AS BIGINT) AS block";

/// A WAL page's header: short on most pages, long on a segment's first.
const SHORT_PAGE_HEADER: u64 = 24;
const LONG_PAGE_HEADER: u64 = 40;

/// The replay location a standby must reach to show every commit made
/// before `insert` (`pg_current_wal_insert_lsn()`) was read.
///
/// When the last record ends exactly at a page boundary, the insert
/// location points past the next page's header (24 bytes, 40 at a
/// segment's start), which no record ends at: a standby's replay location
/// stops at the boundary and would not pass it until someone else writes.
/// No record can end inside a page header, so such a location is moved back
/// to the boundary.
pub(crate) fn commit_end(insert: u64, segment: u64, block: u64) -> u64 {
    if segment > 0 && insert % segment == LONG_PAGE_HEADER {
        insert - LONG_PAGE_HEADER
    } else if block > 0 && insert % block == SHORT_PAGE_HEADER {
        insert - SHORT_PAGE_HEADER
    } else {
        insert
    }
}

/// Whether this standby has replayed up to `lsn` (PostgreSQL's text form),
/// and whether it is a standby at all.
pub(crate) fn replayed_sql(lsn: &str) -> String {
    format!(
        "SELECT pg_is_in_recovery() AS standby, \
         COALESCE(pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn, false) AS reached"
    )
}

/// The longest pause between two looks at a standby's replay location.
const REPLAY_POLL_MAX: Duration = Duration::from_millis(5);

/// PostgreSQL 15 has no function that waits for a replay location: the
/// sync and async drivers look, then look again after a short, growing
/// pause, until a deadline.
pub(crate) struct ReplayPoll {
    deadline: Instant,
    pause: Duration,
}

impl ReplayPoll {
    /// Looks for at most `limit` from now.
    pub(crate) fn new(limit: Duration) -> Self {
        ReplayPoll {
            deadline: Instant::now() + limit,
            pause: Duration::from_micros(200),
        }
    }

    /// After a look that settled nothing: how long to pause before the next
    /// one, or `None` when the time is up (the standby is behind).
    pub(crate) fn next_pause(&mut self) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let pause = self.pause.min(left);
        self.pause = (self.pause * 2).min(REPLAY_POLL_MAX);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT: u64 = 16 << 20;
    const BLOCK: u64 = 8192;

    #[test]
    fn a_location_after_a_page_header_is_moved_back_to_the_boundary() {
        // 0/2A6E018: 24 bytes into a page, inside a segment.
        let page = 0x2A6_E000;
        assert_eq!(commit_end(page + 24, SEGMENT, BLOCK), page);
        // 0/3000028: 40 bytes into a segment (its first page's long header).
        let segment = 3 * SEGMENT;
        assert_eq!(commit_end(segment + 40, SEGMENT, BLOCK), segment);
    }

    #[test]
    fn other_locations_are_kept() {
        let page = 0x2A6_E000;
        for offset in [0, 8, 32, 40, 48, 4096, BLOCK - 8] {
            assert_eq!(
                commit_end(page + offset, SEGMENT, BLOCK),
                page + offset,
                "{offset}"
            );
        }
        // 24 bytes into a segment is inside its long header: no record ends
        // there either, but the insert location never points there.
        assert_eq!(commit_end(SEGMENT + 24, SEGMENT, BLOCK), SEGMENT);
        // Unknown sizes: kept as read.
        assert_eq!(commit_end(0x2A6_E018, 0, 0), 0x2A6_E018);
    }

    #[test]
    fn the_poll_pauses_grow_and_stop_at_the_deadline() {
        let mut poll = ReplayPoll::new(Duration::from_millis(30));
        let first = poll.next_pause().expect("time left");
        let second = poll.next_pause().expect("time left");
        assert!(
            second > first && second <= REPLAY_POLL_MAX,
            "{first:?} {second:?}"
        );
        std::thread::sleep(Duration::from_millis(31));
        assert_eq!(poll.next_pause(), None);
    }

    #[test]
    fn replay_check_names_the_location() {
        assert!(replayed_sql("16/B374D848").contains(">= '16/B374D848'::pg_lsn"));
    }
}
