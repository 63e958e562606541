//! Telling a forked child from its parent, at the cost of one atomic load,
//! and cutting the child off from the parent's connections.
//!
//! A child of `fork()` inherits the parent's sockets but not its threads. It
//! must never write to (or close with QUIT/Terminate) a connection the parent
//! still uses, and r2d2's worker threads, which open new connections, do not
//! exist in it. The pool compares the generation recorded when its r2d2 pool
//! was built with this counter, which a `pthread_atfork` child handler bumps.
//!
//! The same handler replaces, in the child only, the descriptor of every
//! pooled connection whose socket is known with an unconnected socket
//! (`dup2`): whatever the child then sends on a connection it inherited (a
//! body that forked and went on, a `Pool::get` connection held across the
//! fork, a destructor sending QUIT) fails with "not connected" instead of
//! reaching the parent's session. The parent's sockets are untouched. The
//! registry is a fixed-size array of atomics, so the handler, which runs in
//! a process where other threads' locks may be held forever, takes no lock
//! and calls only async-signal-safe functions.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Descriptors of live pooled connections; -1 marks a free slot.
const SLOTS: usize = 4096;
static LIVE: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// An unconnected socket, created at the first registration.
static DEAD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn in_child() {
    // Async-signal-safe: atomic loads and stores, and dup2.
    GENERATION.fetch_add(1, Ordering::SeqCst);
    let dead = DEAD.load(Ordering::SeqCst);
    if dead < 0 {
        return;
    }
    for slot in &LIVE {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: both are descriptors of this process; dup2 only
            // replaces the child's copy of `fd`.
            unsafe { libc::dup2(dead, fd) };
            slot.store(-1, Ordering::SeqCst);
        }
    }
}

fn register_handler() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only does what `in_child` says; the
        // return value is an errno (ENOMEM) we cannot act on beyond reporting
        // no forks, which is what the counter already says.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
}

/// The current fork generation: 0 in the original process, +1 in each child
/// generation. Installs the fork handler on first use.
pub(crate) fn generation() -> u64 {
    register_handler();
    current()
}

/// The same, for code that runs only after a pool (or a [`crate::lend`])
/// installed the handler: one atomic load.
#[inline]
pub(crate) fn current() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

/// Cut `fd` off in any child forked while the returned guard lives. `None`
/// when the registry is full or no socket could be made (then a child's
/// writes on this connection are stopped only by the runner's checks).
pub(crate) fn protect(fd: RawFd) -> Option<Protected> {
    register_handler();
    if DEAD.load(Ordering::Acquire) < 0 {
        // SAFETY: plain socket creation.
        let s = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return None;
        }
        if DEAD
            .compare_exchange(-1, s, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // SAFETY: ours, never shared.
            unsafe { libc::close(s) };
        }
    }
    LIVE.iter().enumerate().find_map(|(i, slot)| {
        slot.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Protected { slot: i, fd })
    })
}

/// A registered descriptor; unregistered when dropped (before the connection
/// closes it, so a reused number is never cut off in a child).
#[derive(Debug)]
pub(crate) struct Protected {
    slot: usize,
    fd: RawFd,
}

impl Drop for Protected {
    fn drop(&mut self) {
        let _ = LIVE[self.slot].compare_exchange(self.fd, -1, Ordering::AcqRel, Ordering::Acquire);
    }
}
