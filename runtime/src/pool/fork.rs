//! Telling a forked child from its parent, at the cost of one atomic load.
//!
//! A child of `fork()` inherits the parent's sockets but not its threads. It
//! must never write to (or close with QUIT/Terminate) a connection the parent
//! still uses, and r2d2's worker threads, which open new connections, do not
//! exist in it. The pool compares the generation recorded when its r2d2 pool
//! was built with this counter, which a `pthread_atfork` child handler bumps.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn in_child() {
    // Async-signal-safe: one atomic add.
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

/// The current fork generation: 0 in the original process, +1 in each child
/// generation. Installs the fork handler on first use.
pub(crate) fn generation() -> u64 {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a handler that only does an atomic add; the
        // return value is an errno (ENOMEM) we cannot act on beyond reporting
        // no forks, which is what the counter already says.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
    GENERATION.load(Ordering::Acquire)
}
