//! Scoped sessions for async calls: which connection an annotated call in
//! this task joins. The async twin of `session.rs`, on a tokio task-local
//! instead of a thread-local (a task moves between threads at each await).
//!
//! Each task keeps a chain of frames, one per connection its `#[db_txn]`
//! calls run on, innermost first. A frame is *busy* while a body holds its
//! `&mut C`, and *lent* while that body runs a future under [`lend_async`].
//! A call joins only a lent connection, and claims it (busy again) until it
//! ends; a call that finds it busy fails with
//! [`Error::ConnectionBorrowed`](crate::Error::ConnectionBorrowed).
//!
//! A frame is visible only while the future that pushed it is being polled,
//! so a joined call is polled, each time, inside the [`lend_async`] that lent
//! the connection: the `&mut C` it holds is valid exactly then. A joined
//! call's future that escaped that scope (returned out of it half-polled)
//! panics when polled, rather than touch a connection it no longer borrows.

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use crate::backend::AsyncTxnConnection;
use crate::session::Settings;
use crate::Error;

tokio::task_local! {
    static TOP: Option<Arc<Frame>>;
}

/// A connection pointer lent for the duration of a [`lend_async`].
#[derive(Clone, Copy)]
struct LentPtr(*mut ());

// SAFETY: the pointer is dereferenced only by a joined call while it is
// polled inside the scope of the `lend_async` that holds the `&mut C` it was
// made from (checked at each poll by `Joined`); `C: Send`.
unsafe impl Send for LentPtr {}

pub(crate) struct Frame {
    parent: Option<Arc<Frame>>,
    type_id: TypeId,
    /// `None` for a connection lent from outside any pool.
    pool: Option<u64>,
    /// Identity of the connection (its address), never dereferenced.
    addr: usize,
    settings: Option<Settings>,
    state: Mutex<State>,
}

struct State {
    holder: &'static str,
    lent: Option<LentPtr>,
    /// The joined calls that hold the connection, outermost first: a joined
    /// call may lend it on to calls of its own. A lend that ends takes the
    /// claims made under it off, so a joined call's future that outlived its
    /// lend finds its claim gone.
    claims: Vec<u64>,
}

impl Frame {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn top() -> Option<Arc<Frame>> {
    TOP.try_with(Clone::clone).ok().flatten()
}

fn chain(mut frame: Option<Arc<Frame>>) -> impl Iterator<Item = Arc<Frame>> {
    std::iter::from_fn(move || {
        let current = frame.take()?;
        frame = current.parent.clone();
        Some(current)
    })
}

/// The frame is in this task's chain right now.
fn in_scope(frame: &Arc<Frame>) -> bool {
    chain(top()).any(|f| Arc::ptr_eq(&f, frame))
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
    frame: Arc<Frame>,
    pub holder: &'static str,
    pub settings: Option<Settings>,
}

static NEXT_CLAIM: AtomicU64 = AtomicU64::new(1);

impl Lent {
    /// Claim the lent connection for a joining call. The frame is busy until
    /// the returned claim drops.
    ///
    /// # Safety
    /// `C` must be the type the frame was lent as (checked by `lookup`); the
    /// reference must be used only inside a future wrapped by
    /// [`Claim::guard`], which checks at each poll that the lend is still on.
    pub(crate) unsafe fn claim<'a, C>(self, holder: &'static str) -> Option<(&'a mut C, Claim)> {
        let id = NEXT_CLAIM.fetch_add(1, Ordering::Relaxed);
        let mut state = self.frame.state();
        let ptr = state.lent?;
        let saved = (state.holder, state.lent);
        state.holder = holder;
        state.lent = None;
        state.claims.push(id);
        drop(state);
        let claim = Claim {
            frame: self.frame,
            id,
            saved,
        };
        // SAFETY: `ptr` was made in `lend_async` from a `&mut C` that it keeps
        // borrowed while the frame is lent, and no other reference is handed
        // out while this claim marks the frame busy.
        Some((unsafe { &mut *ptr.0.cast::<C>() }, claim))
    }
}

/// Find the frame a call for `C` on pool `pool` joins, innermost first.
pub(crate) fn lookup<C: AsyncTxnConnection>(pool: Option<u64>) -> Lookup {
    let ty = TypeId::of::<C>();
    let found = chain(top()).find(|f| f.type_id == ty && (f.pool.is_none() || f.pool == pool));
    match found {
        None => Lookup::Free,
        Some(frame) => {
            let (holder, lent) = {
                let state = frame.state();
                (state.holder, state.lent.is_some())
            };
            if lent {
                Lookup::Lent(Lent {
                    holder,
                    settings: frame.settings,
                    frame,
                })
            } else {
                Lookup::Busy { holder }
            }
        }
    }
}

/// A joined call's hold on a lent connection; gives it back when dropped.
pub(crate) struct Claim {
    frame: Arc<Frame>,
    id: u64,
    saved: (&'static str, Option<LentPtr>),
}

impl Claim {
    /// `fut`, polled only while the connection is still lent to this claim.
    pub(crate) fn guard<F: Future>(&self, fut: F) -> Guarded<F> {
        Guarded {
            fut,
            frame: self.frame.clone(),
            id: self.id,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut state = self.frame.state();
        // Gone already when the lend it was made under ended first.
        if state.claims.last() == Some(&self.id) {
            state.claims.pop();
            (state.holder, state.lent) = self.saved;
        }
    }
}

pin_project_lite::pin_project! {
    /// A future that uses a lent connection: checks at each poll that the
    /// lend that made its reference is still on.
    pub(crate) struct Guarded<F> {
        #[pin]
        fut: F,
        frame: Arc<Frame>,
        id: u64,
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = F::Output;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let claimed = this.frame.state().claims.contains(this.id);
        if !claimed || !in_scope(this.frame) {
            // Polling on would use a connection this future no longer borrows.
            panic!(
                "db_txn: a call that joined a lent connection was polled after the \
                 `lend_async` that lent it ended; await joined calls inside the lending future"
            );
        }
        this.fut.poll(cx)
    }
}

/// Run `fut` (the body of an outermost call) with a busy frame for the
/// connection at `addr`.
pub(crate) fn enter<C: AsyncTxnConnection, F: Future>(
    pool: u64,
    addr: usize,
    holder: &'static str,
    settings: Settings,
    fut: F,
) -> impl Future<Output = F::Output> {
    let frame = Arc::new(Frame {
        parent: top(),
        type_id: TypeId::of::<C>(),
        pool: Some(pool),
        addr,
        settings: Some(settings),
        state: Mutex::new(State {
            holder,
            lent: None,
            claims: Vec::new(),
        }),
    });
    TOP.scope(Some(frame), fut)
}

/// Run `f` with `conn` lent to the `#[db_txn]` calls it awaits: they join
/// `conn` (in a SAVEPOINT when it is in a transaction) instead of checking
/// out a connection of their own. The async twin of [`lend`](crate::lend).
///
/// ```no_run
/// use db_txn::db_txn;
/// use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
///
/// #[db_txn]
/// async fn add(conn: &mut AsyncPgConnection, n: i32) -> Result<(), db_txn::Error> {
///     conn.batch_execute(&format!("INSERT INTO t VALUES ({n})")).await?;
///     Ok(())
/// }
///
/// #[db_txn]
/// async fn add_two(conn: &mut AsyncPgConnection) -> Result<(), db_txn::Error> {
///     // Both inserts commit or roll back with this transaction.
///     db_txn::lend_async(conn, async || {
///         add(1).await?;
///         add(2).await
///     })
///     .await
/// }
/// ```
///
/// Code that already holds a connection (a test inside
/// `begin_test_transaction`, say) runs annotated functions on it the same
/// way: `db_txn::lend_async(&mut conn, async || create_user("alice").await).await`.
pub async fn lend_async<C: AsyncTxnConnection, R>(conn: &mut C, f: impl AsyncFnOnce() -> R) -> R {
    let ty = TypeId::of::<C>();
    let addr = conn as *const C as usize;
    let ptr = LentPtr((conn as *mut C).cast::<()>());
    let own = chain(top()).find(|frame| frame.type_id == ty && frame.addr == addr);
    match own {
        Some(frame) => {
            let _restore = Lending::new(frame, ptr);
            f().await
        }
        None => {
            let frame = Arc::new(Frame {
                parent: top(),
                type_id: ty,
                pool: None,
                addr,
                settings: None,
                state: Mutex::new(State {
                    holder: "db_txn::lend_async",
                    lent: Some(ptr),
                    claims: Vec::new(),
                }),
            });
            TOP.scope(Some(frame), f()).await
        }
    }
}

/// Marks a call's own frame lent, and busy again when the lend ends (also
/// when its future is dropped).
struct Lending {
    frame: Arc<Frame>,
    saved: (&'static str, Option<LentPtr>),
    /// Claims made before this lend.
    claims: usize,
}

impl Lending {
    fn new(frame: Arc<Frame>, ptr: LentPtr) -> Self {
        let mut state = frame.state();
        let saved = (state.holder, state.lent);
        let claims = state.claims.len();
        state.lent = Some(ptr);
        drop(state);
        Lending {
            frame,
            saved,
            claims,
        }
    }
}

impl Drop for Lending {
    fn drop(&mut self) {
        let mut state = self.frame.state();
        (state.holder, state.lent) = self.saved;
        state.claims.truncate(self.claims);
    }
}

/// Run `f` on the connection currently lent to this task with
/// [`lend_async`], for helper code that has no `#[db_txn]` of its own. The
/// async twin of [`with_connection`](crate::with_connection).
pub async fn with_connection_async<C: AsyncTxnConnection, R>(
    f: impl AsyncFnOnce(&mut C) -> R,
) -> Result<R, Error> {
    let ty = TypeId::of::<C>();
    let Some(frame) = chain(top()).find(|frame| frame.type_id == ty) else {
        return Err(Error::NoSession {
            connection: std::any::type_name::<C>(),
        });
    };
    let holder = frame.state().holder;
    let lent = Lent {
        frame,
        holder,
        settings: None,
    };
    // SAFETY: the frame's type is `C`; the reference is used only inside
    // `claim.guard(..)`.
    let Some((conn, claim)) = (unsafe { lent.claim::<C>("db_txn::with_connection_async") }) else {
        return Err(Error::ConnectionBorrowed {
            function: "db_txn::with_connection_async",
            holder,
        });
    };
    let out = claim.guard(f(conn)).await;
    drop(claim);
    Ok(out)
}
