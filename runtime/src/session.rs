//! Scoped sessions: which connection an annotated call on this thread joins.
//!
//! Each thread keeps a stack of the connections its `#[db_txn]` calls are
//! running on. An entry is *busy* while a body holds its `&mut C`, and *lent*
//! while that body (or any code holding a connection) runs a closure under
//! [`lend`]. An annotated call joins only a lent connection: handing out a
//! second `&mut C` to a connection whose body still holds one would be
//! undefined behaviour, so a call that finds the connection busy fails with
//! [`Error::ConnectionBorrowed`] and says how to fix it.

use std::any::TypeId;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::Duration;

use crate::backend::SingleWriter;
use crate::{Error, Isolation, TxnConnection};

/// The transaction settings a joining call must agree with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub isolation: Option<Isolation>,
    pub timeout: Option<Duration>,
}

struct Entry {
    type_id: TypeId,
    /// `None` for a connection lent from outside any pool.
    pool: Option<u64>,
    /// Identity of the connection (its address), never dereferenced.
    addr: usize,
    holder: &'static str,
    /// `None` when unknown (a connection lent from outside).
    settings: Option<Settings>,
    /// Set while lent: derived from the `&mut C` that [`lend`] holds.
    lent: Option<*mut ()>,
    /// The fork generation the entry was made in: a child forked inside a
    /// session must not use the parent's connection.
    generation: u64,
    /// The lock its transaction may hold on a one-writer database (SQLite).
    held: Option<Held>,
}

/// What an entry's transaction may hold on a database that takes one writer
/// at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub db: SingleWriter,
    /// Read-write (otherwise `read_only`).
    pub writes: bool,
}

thread_local! {
    static STACK: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// What an annotated call finds for its connection type and pool.
pub(crate) enum Lookup {
    /// No session: check a connection out.
    Free,
    /// A body holds the connection without lending it.
    Busy { holder: &'static str },
    /// Join this connection.
    Lent(Lent),
}

pub(crate) struct Lent {
    index: usize,
    ptr: *mut (),
    pub holder: &'static str,
    pub settings: Option<Settings>,
    /// Lent in a parent process, before a fork.
    pub inherited: bool,
}

impl Lent {
    /// Take the lent connection for a joining call's body. The entry is busy
    /// until the returned claim drops.
    ///
    /// # Safety
    /// `C` must be the type the entry was lent as (checked by `lookup`), and
    /// the caller must not keep the reference past the claim.
    pub(crate) unsafe fn claim<'a, C>(self, holder: &'static str) -> (&'a mut C, Claim) {
        let claim = Claim::new(self.index, None, holder);
        // SAFETY: `ptr` was derived in `lend` from a `&mut C` that `lend`
        // keeps borrowed until its closure returns, and no other reference
        // to it is handed out while this claim marks the entry busy.
        (unsafe { &mut *self.ptr.cast::<C>() }, claim)
    }
}

/// Find the session a call for `C` on pool `pool` joins, topmost first.
pub(crate) fn lookup<C: TxnConnection>(pool: Option<u64>) -> Lookup {
    let ty = TypeId::of::<C>();
    STACK.with(|stack| {
        let stack = stack.borrow();
        let found = stack
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| e.type_id == ty && (e.pool.is_none() || e.pool == pool));
        match found {
            None => Lookup::Free,
            Some((index, e)) => match e.lent {
                None => Lookup::Busy { holder: e.holder },
                Some(ptr) => Lookup::Lent(Lent {
                    index,
                    ptr,
                    holder: e.holder,
                    settings: e.settings,
                    inherited: e.generation != crate::pool::fork_generation(),
                }),
            },
        }
    })
}

/// Marks a session entry busy (or lent) and restores it when dropped.
pub(crate) struct Claim {
    index: usize,
    saved: (Option<*mut ()>, &'static str),
    _not_send: PhantomData<*const ()>,
}

impl Claim {
    fn new(index: usize, lent: Option<*mut ()>, holder: &'static str) -> Claim {
        let saved = STACK.with(|stack| {
            let entry = &mut stack.borrow_mut()[index];
            let saved = (entry.lent, entry.holder);
            entry.lent = lent;
            entry.holder = holder;
            saved
        });
        Claim {
            index,
            saved,
            _not_send: PhantomData,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = STACK.try_with(|stack| {
            if let Some(entry) = stack.borrow_mut().get_mut(self.index) {
                (entry.lent, entry.holder) = self.saved;
            }
        });
    }
}

/// A session entry pushed for the lifetime of this guard.
pub(crate) struct Scope {
    _not_send: PhantomData<*const ()>,
}

impl Scope {
    /// Record that the entry's transaction is on `db`, a database that takes
    /// one writer at a time, and whether it writes.
    pub(crate) fn holding(self, db: Option<SingleWriter>, writes: bool) -> Scope {
        if let Some(db) = db {
            STACK.with(|stack| {
                if let Some(entry) = stack.borrow_mut().last_mut() {
                    entry.held = Some(Held { db, writes });
                }
            });
        }
        self
    }
}

/// The caller on this thread, topmost first, whose transaction on pool
/// `pool` (or on the database `database`) makes `blocks` true: the function
/// now using its connection, and what it holds.
pub(crate) fn lock_holder(
    pool: u64,
    database: Option<u64>,
    blocks: impl Fn(Held) -> bool,
) -> Option<(&'static str, Held)> {
    STACK.with(|stack| {
        stack.borrow().iter().rev().find_map(|e| {
            let held = e.held?;
            let same = e.pool == Some(pool) || (database.is_some() && held.db.database == database);
            (same && blocks(held)).then_some((e.holder, held))
        })
    })
}

impl Drop for Scope {
    fn drop(&mut self) {
        let _ = STACK.try_with(|stack| stack.borrow_mut().pop());
    }
}

/// Push a busy entry for a connection an annotated call checked out.
pub(crate) fn enter<C: TxnConnection>(
    pool: u64,
    conn: &C,
    holder: &'static str,
    settings: Settings,
) -> Scope {
    push(Entry {
        type_id: TypeId::of::<C>(),
        pool: Some(pool),
        addr: conn as *const C as usize,
        holder,
        settings: Some(settings),
        lent: None,
        generation: crate::pool::fork_generation(),
        held: None,
    })
}

fn push(entry: Entry) -> Scope {
    STACK.with(|stack| stack.borrow_mut().push(entry));
    Scope {
        _not_send: PhantomData,
    }
}

/// Run `f` with `conn` lent to the `#[db_txn]` calls it makes: they join
/// `conn` (in a SAVEPOINT when it is in a transaction) instead of checking out
/// a connection of their own.
///
/// Inside an annotated function, lend the connection to the calls that must
/// share its transaction:
///
/// ```
/// use db_txn::db_txn;
/// use diesel::prelude::*;
/// use diesel::SqliteConnection;
///
/// #[db_txn]
/// fn add(conn: &mut SqliteConnection, n: i32) -> Result<(), db_txn::Error> {
///     diesel::sql_query(format!("INSERT INTO t VALUES ({n})")).execute(conn)?;
///     Ok(())
/// }
///
/// #[db_txn]
/// fn add_two(conn: &mut SqliteConnection) -> Result<(), db_txn::Error> {
///     // Both inserts commit or roll back with this transaction.
///     db_txn::lend(conn, || {
///         add(1)?;
///         add(2)
///     })
/// }
/// # fn main() -> Result<(), db_txn::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let pool = db_txn::Pool::<SqliteConnection>::new(dir.path().join("a.db").to_str().unwrap())?;
/// # diesel::sql_query("CREATE TABLE t (n INTEGER)").execute(&mut *pool.get()?)?;
/// # db_txn::install(pool);
/// add_two()?;
/// # Ok(()) }
/// ```
///
/// Code that already holds a connection (for example a test inside
/// `begin_test_transaction`) runs annotated functions on it the same way:
/// `db_txn::lend(&mut conn, || create_user("alice"))`.
pub fn lend<C: TxnConnection, R>(conn: &mut C, f: impl FnOnce() -> R) -> R {
    let ty = TypeId::of::<C>();
    let addr = conn as *const C as usize;
    let ptr = (conn as *mut C).cast::<()>();
    let own = STACK.with(|stack| {
        stack
            .borrow()
            .iter()
            .rposition(|e| e.type_id == ty && e.addr == addr)
    });
    // Keep the guard alive while `f` runs; `conn` stays borrowed until then.
    let _guard = match own {
        Some(index) => {
            let holder = STACK.with(|stack| stack.borrow()[index].holder);
            LendGuard::Own(Claim::new(index, Some(ptr), holder))
        }
        None => LendGuard::Outside(push(Entry {
            type_id: ty,
            pool: None,
            addr,
            holder: "db_txn::lend",
            settings: None,
            lent: Some(ptr),
            generation: crate::pool::fork_generation(),
            held: None,
        })),
    };
    f()
}

/// Restores the session stack when a [`lend`] ends, also on panic.
enum LendGuard {
    /// The connection of an annotated call on this thread.
    Own(#[allow(dead_code)] Claim),
    /// A connection from outside any `#[db_txn]` call.
    Outside(#[allow(dead_code)] Scope),
}

/// Run `f` on the connection currently lent to this thread with [`lend`], for
/// helper code that has no `#[db_txn]` of its own.
///
/// ```
/// use diesel::prelude::*;
/// use diesel::SqliteConnection;
///
/// fn count(conn: &mut SqliteConnection) -> QueryResult<i64> {
///     diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>("42")).get_result(conn)
/// }
///
/// let mut conn = SqliteConnection::establish(":memory:").unwrap();
/// let n = db_txn::lend(&mut conn, || db_txn::with_connection(count)).unwrap().unwrap();
/// assert_eq!(n, 42);
/// assert!(db_txn::with_connection(count).is_err(), "nothing lent here");
/// ```
pub fn with_connection<C: TxnConnection, R>(f: impl FnOnce(&mut C) -> R) -> Result<R, Error> {
    let ty = TypeId::of::<C>();
    let found = STACK.with(|stack| {
        let stack = stack.borrow();
        stack
            .iter()
            .enumerate()
            .rev()
            .find(|(_, e)| e.type_id == ty)
            .map(|(index, e)| (index, e.lent, e.holder, e.generation))
    });
    match found {
        None => Err(Error::NoSession {
            connection: std::any::type_name::<C>(),
        }),
        Some((_, _, _, generation)) if generation != crate::pool::fork_generation() => {
            Err(Error::Forked {
                function: "db_txn::with_connection",
            })
        }
        Some((_, None, holder, _)) => Err(Error::ConnectionBorrowed {
            function: "db_txn::with_connection",
            holder,
        }),
        Some((index, Some(ptr), _, _)) => {
            let _claim = Claim::new(index, None, "db_txn::with_connection");
            // SAFETY: as in `Lent::claim`: `ptr` comes from the `&mut C` that
            // `lend` holds, and the entry is busy while `f` runs.
            Ok(f(unsafe { &mut *ptr.cast::<C>() }))
        }
    }
}
