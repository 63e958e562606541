//! CPU pinning, to put every contender in the same scheduling regime.
//!
//! Unpinned on a two-core VM, a loopback round trip costs about 20 µs when
//! the client and the server process run on the same CPU and several times
//! that when the wake-up crosses CPUs; which one a connection gets sticks for
//! seconds and differs between connections, i.e. between contenders, so an
//! unpinned run reports differences of 2x that are placement, not code.
//! (Client on one CPU and servers on the other is no better: every round trip
//! then crosses, and the point-read takes ten times as long.)
//!
//! - `one` (default): the benchmark and the servers it starts share one CPU
//!   (the servers inherit the mask of the thread that spawns them). Every
//!   round trip is a same-CPU switch, and the client's own CPU time adds
//!   fully to the latency: the regime in which an overhead of `#[db_txn]`
//!   shows most.
//! - `none`: no pinning.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    One,
    None,
}

impl Pin {
    pub fn parse(s: &str) -> Option<Pin> {
        match s {
            "one" => Some(Pin::One),
            "none" => Some(Pin::None),
            _ => None,
        }
    }
}

/// What [`pin`] did.
#[derive(Debug, Clone)]
pub struct Pinned {
    /// The CPU everything runs on, if pinned.
    pub cpu: Option<usize>,
    /// What was done, for the report.
    pub text: String,
}

/// Pins the calling thread to the first CPU it may use; call it before any
/// other thread, child process or server is started (they inherit its mask).
pub fn pin(pin: Pin) -> Pinned {
    let not = |text: &str| Pinned {
        cpu: None,
        text: text.into(),
    };
    if pin == Pin::None {
        return not("not pinned (`--pin none`)");
    }
    // SAFETY: `set` is a plain bit set; the calls fill in or read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of_val(&set);
        if libc::sched_getaffinity(0, size, &mut set) != 0 {
            return not("not pinned: sched_getaffinity failed");
        }
        let Some(cpu) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)) else {
            return not("not pinned: no CPU in the mask");
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, size, &one) != 0 {
            return not("not pinned: sched_setaffinity failed");
        }
        Pinned {
            cpu: Some(cpu),
            text: format!(
                "pinned: the benchmark and the servers it starts all run on CPU {cpu} (`--pin one`)"
            ),
        }
    }
}
