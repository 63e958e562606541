//! A thread per pool that watches what the database driver cannot: a
//! statement that gets no answer (a frozen server, a black-holed link), and a
//! connection held too long (a leak).
//!
//! diesel offers no client-side read timeout for MySQL, so a statement on a
//! frozen server blocks until TCP gives up, which can take many minutes. When
//! `stall_timeout` is set, the pool finds each connection's socket at connect
//! (the server reports the client's port; the socket whose local port and peer
//! port match is the one) and the watchdog shuts it down once a statement has
//! waited longer than the limit. The client library then reports a lost
//! connection, which the runner treats like any other: a retry before COMMIT,
//! `CommitUnknown` during it. The descriptor is only shut down, never closed,
//! and never after the connection was dropped (both take `Watch::guard`), so
//! the watchdog cannot touch a descriptor that was reused.
//!
//! Connections reached through a unix socket, or through a proxy or NAT that
//! shows the server a different client address, have no socket the pool can
//! identify; for them only the server-side `timeout` option and TCP itself
//! bound a stall.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::signals::Signals;
use crate::stats::Counters;

/// What the watchdog knows about one connection.
pub(crate) struct Watch {
    /// Nanoseconds since the watchdog's start when the statement in flight
    /// began; 0 when none is.
    statement_since: AtomicU64,
    /// When the connection was checked out (0 while idle), and by whom.
    held: Mutex<Option<(Instant, &'static str)>>,
    leak_reported: AtomicBool,
    /// The socket, and whether the connection still owns it.
    guard: Mutex<Option<RawFd>>,
    origin: Instant,
}

impl Watch {
    pub(crate) fn statement_started(&self) {
        let nanos = self.origin.elapsed().as_nanos().max(1);
        self.statement_since
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Relaxed);
    }

    pub(crate) fn statement_finished(&self) {
        self.statement_since.store(0, Relaxed);
    }

    pub(crate) fn checked_out(&self, by: &'static str) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), by));
        self.leak_reported.store(false, Relaxed);
    }

    pub(crate) fn checked_in(&self) {
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// The connection is closing: its descriptor may be reused from now on.
    pub(crate) fn closing(&self) {
        *self.guard.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(crate) fn set_socket(&self, fd: RawFd) {
        *self.guard.lock().unwrap_or_else(PoisonError::into_inner) = Some(fd);
    }
}

/// Limits the watchdog enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub stall: Option<Duration>,
    pub leak: Option<Duration>,
}

/// The watchdog of one pool generation; its thread ends when this drops.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
}

struct Shared {
    watched: Mutex<Vec<Weak<Watch>>>,
    limits: Limits,
    origin: Instant,
    signals: Arc<Signals>,
}

impl Watchdog {
    /// `None` when there is nothing to watch.
    pub(crate) fn start(limits: Limits, signals: Arc<Signals>) -> Option<Watchdog> {
        let shortest = [limits.stall, limits.leak].into_iter().flatten().min()?;
        let shared = Arc::new(Shared {
            watched: Mutex::new(Vec::new()),
            limits,
            origin: Instant::now(),
            signals,
        });
        let period = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let weak = Arc::downgrade(&shared);
        thread::Builder::new()
            .name("db_txn-watchdog".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    shared.inspect();
                    drop(shared);
                    thread::sleep(period);
                }
            })
            .ok()?;
        Some(Watchdog { shared })
    }

    pub(crate) fn watch(&self) -> Arc<Watch> {
        let watch = Arc::new(Watch {
            statement_since: AtomicU64::new(0),
            held: Mutex::new(None),
            leak_reported: AtomicBool::new(false),
            guard: Mutex::new(None),
            origin: self.shared.origin,
        });
        let mut watched = self
            .shared
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        watched.retain(|w| w.strong_count() > 0);
        watched.push(Arc::downgrade(&watch));
        watch
    }

    pub(crate) fn limits(&self) -> Limits {
        self.shared.limits
    }
}

impl Shared {
    fn inspect(&self) {
        let watched: Vec<Arc<Watch>> = {
            let list = self.watched.lock().unwrap_or_else(PoisonError::into_inner);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        let now = self.origin.elapsed();
        for watch in watched {
            if let Some(stall) = self.limits.stall {
                self.check_stall(&watch, now, stall);
            }
            if let Some(leak) = self.limits.leak {
                self.check_leak(&watch, leak);
            }
        }
    }

    fn check_stall(&self, watch: &Watch, now: Duration, stall: Duration) {
        let since = watch.statement_since.load(Relaxed);
        if since == 0 || now.saturating_sub(Duration::from_nanos(since)) < stall {
            return;
        }
        let guard = watch.guard.lock().unwrap_or_else(PoisonError::into_inner);
        // Re-check under the guard: the statement may have just finished.
        if let (Some(fd), true) = (*guard, watch.statement_since.load(Relaxed) == since) {
            // SAFETY: `fd` belongs to a live connection (the guard is taken
            // before the connection closes it); shutdown() does not free it.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
            watch.statement_since.store(0, Relaxed);
            tracing::warn!(
                target: "db_txn",
                stalled_ms = u64::try_from(stall.as_millis()).unwrap_or(u64::MAX),
                "no answer from the server: connection shut down (stall_timeout)"
            );
        }
    }

    fn check_leak(&self, watch: &Watch, leak: Duration) {
        let held = *watch.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((since, by)) = held {
            let held_for = since.elapsed();
            if held_for >= leak && !watch.leak_reported.swap(true, Relaxed) {
                Counters::bump(&self.signals.counters.leaks);
                tracing::warn!(
                    target: "db_txn",
                    function = by,
                    held_ms = u64::try_from(held_for.as_millis()).unwrap_or(u64::MAX),
                    "connection held longer than the leak-detection threshold"
                );
            }
        }
    }
}

/// The socket of a TCP connection whose local port is `local_port` and whose
/// peer port is `peer_port`, among this process's descriptors.
pub(crate) fn find_socket(local_port: u16, peer_port: u16) -> Option<RawFd> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    let mut found = None;
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<RawFd>().ok())
        else {
            continue;
        };
        if port_of(fd, libc::getsockname) == Some(local_port)
            && port_of(fd, libc::getpeername) == Some(peer_port)
        {
            if found.is_some() {
                // Ambiguous (two sockets between the same ports): watch none.
                return None;
            }
            found = Some(fd);
        }
    }
    found
}

type NameFn =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn port_of(fd: RawFd, name: NameFn) -> Option<u16> {
    // SAFETY: an all-zero sockaddr_storage is valid; the call writes at most `len` bytes.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above; a descriptor that is not a socket makes the call fail.
    if unsafe {
        name(
            fd,
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    } != 0
    {
        return None;
    }
    match i32::from(addr.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let v4: &libc::sockaddr_in =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast() };
            Some(u16::from_be(v4.sin_port))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let v6: &libc::sockaddr_in6 =
                unsafe { &*(&addr as *const libc::sockaddr_storage).cast() };
            Some(u16::from_be(v6.sin6_port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_socket_of_a_tcp_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let local = client.local_addr().unwrap().port();
        let peer = client.peer_addr().unwrap().port();
        use std::os::fd::AsRawFd;
        assert_eq!(find_socket(local, peer), Some(client.as_raw_fd()));
        assert_eq!(find_socket(local, peer.wrapping_add(1)), None);
    }
}
