//! Scoped sessions: which connection an annotated call on this thread joins.
//!
//! Each thread keeps a stack of the connections its `#[db_txn]` calls are
//! running on. An entry is *busy* while a body holds its `&mut C`, and *lent*
//! while that body (or any code holding a connection) runs a closure under
//! [`lend`]. An annotated call joins only a lent connection: handing out a
//! second `&mut C` to a connection whose body still holds one would be
//! undefined behaviour, so a call that finds the connection busy fails with
//! [`Error::ConnectionBorrowed`] and says how to fix it.
//!
//! The stack is intrusive: each entry lives in the stack frame of the call
//! (or the `lend`) that made it, linked to the one below, and the thread
//! keeps only a pointer to the top. Entering a call is two stores; an entry
//! is unlinked by its [`Scope`] guard, in the reverse order of entering
//! (guards are lexically scoped, also when unwinding).

use std::any::TypeId;
use std::cell::Cell;
use std::marker::PhantomData;
use std::ptr;
use std::time::Duration;

use crate::backend::SingleWriter;
use crate::{Error, Isolation, TxnConnection};

/// The transaction settings a joining call must agree with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub isolation: Option<Isolation>,
    pub timeout: Option<Duration>,
}

/// One connection in use on this thread.
pub(crate) struct Entry {
    type_id: TypeId,
    /// `None` for a connection lent from outside any pool.
    pool: Option<u64>,
    /// Identity of the connection (its address), never dereferenced.
    addr: usize,
    holder: Cell<&'static str>,
    /// `None` when unknown (a connection lent from outside).
    settings: Option<Settings>,
    /// Set while lent: derived from the `&mut C` that [`lend`] holds.
    lent: Cell<Option<*mut ()>>,
    /// The fork generation the entry was made in: a child forked inside a
    /// session must not use the parent's connection.
    generation: u64,
    /// The lock its transaction may hold on a one-writer database (SQLite).
    held: Option<Held>,
    /// The entry below this one (null at the bottom).
    below: Cell<*const Entry>,
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
    /// The topmost entry (null when none): a `Cell` with no destructor is
    /// the cheapest thread-local there is.
    static TOP: Cell<*const Entry> = const { Cell::new(ptr::null()) };
}

/// No `#[db_txn]` call or `lend` is under way on this thread.
#[inline]
pub(crate) fn is_empty() -> bool {
    TOP.with(Cell::get).is_null()
}

/// The topmost entry for which `pick` is true.
fn find(mut pick: impl FnMut(&Entry) -> bool) -> Option<*const Entry> {
    let mut at = TOP.with(Cell::get);
    while !at.is_null() {
        // SAFETY: every linked entry is alive: it is unlinked by its
        // `Scope` before the frame that holds it ends.
        let entry = unsafe { &*at };
        if pick(entry) {
            return Some(at);
        }
        at = entry.below.get();
    }
    None
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
    entry: *const Entry,
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
        // SAFETY: the entry is linked (found by `lookup` on this thread just
        // now) and outlives the claim, which the caller drops first.
        let claim = unsafe { Claim::new(self.entry, None, holder) };
        // SAFETY: `ptr` was derived in `lend` from a `&mut C` that `lend`
        // keeps borrowed until its closure returns, and no other reference
        // to it is handed out while this claim marks the entry busy.
        (unsafe { &mut *self.ptr.cast::<C>() }, claim)
    }
}

/// Find the session a call for `C` on pool `pool` joins, topmost first.
/// Inline, the common answer (no session on this thread); the search out
/// of line, one copy for every connection type.
#[inline]
pub(crate) fn lookup<C: TxnConnection>(pool: Option<u64>) -> Lookup {
    if is_empty() {
        return Lookup::Free;
    }
    search(TypeId::of::<C>(), pool)
}

#[inline(never)]
fn search(ty: TypeId, pool: Option<u64>) -> Lookup {
    let Some(at) = find(|e| e.type_id == ty && (e.pool.is_none() || e.pool == pool)) else {
        return Lookup::Free;
    };
    // SAFETY: found just now among the linked entries.
    let e = unsafe { &*at };
    match e.lent.get() {
        None => Lookup::Busy {
            holder: e.holder.get(),
        },
        Some(ptr) => Lookup::Lent(Lent {
            entry: at,
            ptr,
            holder: e.holder.get(),
            settings: e.settings,
            inherited: e.generation != crate::pool::fork_generation(),
        }),
    }
}

/// Marks a session entry busy (or lent) and restores it when dropped.
pub(crate) struct Claim {
    entry: *const Entry,
    saved: (Option<*mut ()>, &'static str),
    _not_send: PhantomData<*const ()>,
}

impl Claim {
    /// # Safety
    /// `entry` is linked on this thread and outlives the claim.
    unsafe fn new(entry: *const Entry, lent: Option<*mut ()>, holder: &'static str) -> Claim {
        // SAFETY: as the caller promises.
        let e = unsafe { &*entry };
        let saved = (e.lent.replace(lent), e.holder.replace(holder));
        Claim {
            entry,
            saved,
            _not_send: PhantomData,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // SAFETY: see `Claim::new`.
        let e = unsafe { &*self.entry };
        e.lent.set(self.saved.0);
        e.holder.set(self.saved.1);
    }
}

/// Keeps an entry linked; unlinks it when dropped.
pub(crate) struct Scope<'e> {
    entry: &'e Entry,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Scope<'_> {
    #[inline]
    fn drop(&mut self) {
        let below = self.entry.below.get();
        let _ = TOP.try_with(|top| {
            debug_assert!(ptr::eq(top.get(), self.entry), "scopes end in order");
            top.set(below);
        });
    }
}

/// Link `entry` on top of this thread's stack for the guard's lifetime.
#[inline]
pub(crate) fn enter(entry: &Entry) -> Scope<'_> {
    TOP.with(|top| {
        entry.below.set(top.get());
        top.set(entry);
    });
    Scope {
        entry,
        _not_send: PhantomData,
    }
}

impl Entry {
    /// The entry of a connection an annotated call checked out (busy).
    pub(crate) fn checked_out<C: TxnConnection>(
        pool: u64,
        conn: &C,
        holder: &'static str,
        settings: Settings,
        generation: u64,
        held: Option<Held>,
    ) -> Entry {
        Entry {
            type_id: TypeId::of::<C>(),
            pool: Some(pool),
            addr: conn as *const C as usize,
            holder: Cell::new(holder),
            settings: Some(settings),
            lent: Cell::new(None),
            generation,
            held,
            below: Cell::new(ptr::null()),
        }
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
    let mut found = None;
    find(|e| {
        let Some(held) = e.held else { return false };
        let same = e.pool == Some(pool) || (database.is_some() && held.db.database == database);
        if same && blocks(held) {
            found = Some((e.holder.get(), held));
            true
        } else {
            false
        }
    });
    found
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
///     diesel::sql_query("INSERT INTO t VALUES (?)")
///         .bind::<diesel::sql_types::Integer, _>(n)
///         .execute(conn)?;
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
/// Code that already holds a connection runs annotated functions on it the
/// same way: `db_txn::lend(&mut conn, || create_user("alice"))`. For tests,
/// [`testing::test_transaction`](crate::testing::test_transaction) does this
/// inside a transaction that is rolled back at the end.
pub fn lend<C: TxnConnection, R>(conn: &mut C, f: impl FnOnce() -> R) -> R {
    lend_as(conn, "db_txn::lend", None, f)
}

/// [`lend`], naming the lender in errors and saying what lock its
/// transaction may hold (a test transaction on SQLite).
pub(crate) fn lend_as<C: TxnConnection, R>(
    conn: &mut C,
    holder: &'static str,
    held: Option<Held>,
    f: impl FnOnce() -> R,
) -> R {
    let ty = TypeId::of::<C>();
    let addr = conn as *const C as usize;
    let ptr = (conn as *mut C).cast::<()>();
    let own = find(|e| e.type_id == ty && e.addr == addr);
    let outside;
    // Keep the guard alive while `f` runs; `conn` stays borrowed until then.
    let _guard = match own {
        Some(entry) => {
            // SAFETY: found just now, linked below this frame's scope.
            let holder = unsafe { (*entry).holder.get() };
            // SAFETY: the entry outlives this call, which drops the claim.
            LendGuard::Own(unsafe { Claim::new(entry, Some(ptr), holder) })
        }
        None => {
            outside = Entry {
                type_id: ty,
                pool: None,
                addr,
                holder: Cell::new(holder),
                settings: None,
                lent: Cell::new(Some(ptr)),
                generation: crate::pool::fork_generation(),
                held,
                below: Cell::new(ptr::null()),
            };
            LendGuard::Outside(enter(&outside))
        }
    };
    f()
}

/// Restores the session stack when a [`lend`] ends, also on panic.
enum LendGuard<'e> {
    /// The connection of an annotated call on this thread.
    Own(#[allow(dead_code)] Claim),
    /// A connection from outside any `#[db_txn]` call.
    Outside(#[allow(dead_code)] Scope<'e>),
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
    let Some(at) = find(|e| e.type_id == ty) else {
        return Err(Error::NoSession {
            connection: std::any::type_name::<C>(),
        });
    };
    // SAFETY: found just now among the linked entries.
    let e = unsafe { &*at };
    if e.generation != crate::pool::fork_generation() {
        return Err(Error::Forked {
            function: "db_txn::with_connection",
        });
    }
    let Some(ptr) = e.lent.get() else {
        return Err(Error::ConnectionBorrowed {
            function: "db_txn::with_connection",
            holder: e.holder.get(),
        });
    };
    // SAFETY: the entry outlives this call, which drops the claim.
    let _claim = unsafe { Claim::new(at, None, "db_txn::with_connection") };
    // SAFETY: as in `Lent::claim`: `ptr` comes from the `&mut C` that `lend`
    // holds, and the entry is busy while `f` runs.
    Ok(f(unsafe { &mut *ptr.cast::<C>() }))
}
