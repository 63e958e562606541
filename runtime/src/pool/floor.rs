//! Read-your-writes: per thread and pool, the oldest replication position a
//! read may see (the thread's floor). A write transaction committed on this
//! thread raises it to where its commit is; [`Pool::read_after`] raises it to
//! a token another thread or process handed over. A replica serves a read on
//! this thread only once it shows everything up to the floor.
//!
//! Only pools with replicas keep floors: for the others nothing here runs.
//! The async pool keeps one floor per pool with the same rule
//! ([`Floor::raise`], [`Floor::resolve`]): its tasks move between threads.
//!
//! [`Pool::read_after`]: crate::Pool::read_after

use std::cell::RefCell;

use crate::backend::Position;

/// What this thread's reads must see on one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Floor {
    /// Everything up to this position.
    Known(Position),
    /// A write committed, but where is not known (the position could not be
    /// read after its COMMIT): the primary's position at the next read
    /// stands for it.
    Unknown,
}

impl Floor {
    /// Raise `current` (none yet, or a floor) to at least `floor`: the
    /// rule of the sync pool's per-thread floors and of the async pool's
    /// per-pool one.
    pub(crate) fn raise(current: &mut Option<Floor>, floor: Floor) {
        match (current.as_mut(), floor) {
            (None, floor) => *current = Some(floor),
            (Some(current), Floor::Unknown) => *current = Floor::Unknown,
            // The server's position read later covers this one too.
            (Some(Floor::Unknown), Floor::Known(_)) => {}
            (Some(Floor::Known(current)), Floor::Known(new)) => current.merge(&new),
        }
    }

    /// Replace an unknown floor with the position that stands for it (or
    /// merge it into a known one); nothing without a floor.
    pub(crate) fn resolve(current: &mut Option<Floor>, position: Position) {
        match current {
            None => {}
            Some(Floor::Unknown) => *current = Some(Floor::Known(position)),
            Some(Floor::Known(p)) => p.merge(&position),
        }
    }
}

thread_local! {
    /// (pool id, floor), one entry per pool this thread wrote on.
    static FLOORS: RefCell<Vec<(u64, Option<Floor>)>> = const { RefCell::new(Vec::new()) };
}

/// Raise this thread's floor on `pool` to at least `floor`.
pub(crate) fn raise(pool: u64, floor: Floor) {
    FLOORS.with(|floors| {
        let mut floors = floors.borrow_mut();
        match floors.iter_mut().find(|(id, _)| *id == pool) {
            None => floors.push((pool, Some(floor))),
            Some((_, current)) => Floor::raise(current, floor),
        }
    });
}

/// Replace an unknown floor on `pool` with the position that stands for it.
pub(crate) fn resolve(pool: u64, position: Position) {
    FLOORS.with(|floors| {
        let mut floors = floors.borrow_mut();
        if let Some((_, floor)) = floors.iter_mut().find(|(id, _)| *id == pool) {
            Floor::resolve(floor, position);
        }
    });
}

/// This thread's floor on `pool`, if it has one.
pub(crate) fn get(pool: u64) -> Option<Floor> {
    FLOORS.with(|floors| {
        floors
            .borrow()
            .iter()
            .find(|(id, _)| *id == pool)
            .and_then(|(_, floor)| floor.clone())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_only_rise_per_pool_and_thread() {
        assert_eq!(get(1), None);
        raise(1, Floor::Known(Position::Lsn(10)));
        raise(1, Floor::Known(Position::Lsn(5)));
        raise(2, Floor::Known(Position::Lsn(3)));
        assert_eq!(get(1), Some(Floor::Known(Position::Lsn(10))));
        assert_eq!(get(2), Some(Floor::Known(Position::Lsn(3))));
        raise(1, Floor::Unknown);
        raise(1, Floor::Known(Position::Lsn(20)));
        assert_eq!(get(1), Some(Floor::Unknown), "unknown until resolved");
        resolve(1, Position::Lsn(25));
        assert_eq!(get(1), Some(Floor::Known(Position::Lsn(25))));
        std::thread::spawn(|| assert_eq!(get(1), None, "another thread's floors are its own"))
            .join()
            .unwrap();
    }

    #[test]
    fn one_floor_rises_as_the_per_thread_ones_do() {
        let mut floor = None;
        Floor::resolve(&mut floor, Position::Lsn(1));
        assert_eq!(floor, None, "nothing to resolve without a write");
        Floor::raise(&mut floor, Floor::Known(Position::Lsn(10)));
        Floor::raise(&mut floor, Floor::Known(Position::Lsn(4)));
        assert_eq!(floor, Some(Floor::Known(Position::Lsn(10))));
        Floor::raise(&mut floor, Floor::Unknown);
        assert_eq!(floor, Some(Floor::Unknown));
        Floor::resolve(&mut floor, Position::Lsn(12));
        assert_eq!(floor, Some(Floor::Known(Position::Lsn(12))));
    }
}
