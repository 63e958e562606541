//! The socket under a connection: found when the connection opens, then
//! used to bound what the driver cannot (shut it down when the server stops
//! answering), to check it for end-of-file before COMMIT, to set TCP
//! keepalive, and to make it unusable in a forked child.
//!
//! The client libraries do not expose their descriptor through diesel, so
//! the pool compares this process's socket descriptors before and after the
//! connect (connects of one pool, its watchdog's probe's among them, are
//! serialized for that: `gate.rs`). A new socket is
//! the connection's when it is the only new one whose peer is the URL's port
//! (or a unix socket), or when the server reports our local port. A proxy,
//! NAT or Docker port mapping in between does not matter: only our own end
//! is compared. When no single socket qualifies (another thread opened one
//! to the same port at the same moment), the connection is not watched and
//! the pool logs a WARN once.
//!
//! Linux only (`/proc/self/fd`); elsewhere nothing is found and the bounds
//! that need the socket do not apply (see the crate docs).

use std::os::fd::RawFd;
use std::time::Duration;

/// The socket descriptors of this process at one moment.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// (descriptor, inode): a descriptor number may be reused by another socket.
    sockets: Vec<(RawFd, u64)>,
}

/// Where the driver connects, as far as the URL tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP port (of a proxy, a load balancer or the server).
    Tcp(u16),
    /// A unix-domain socket.
    Unix,
    /// Unknown (several hosts with different ports, say).
    Any,
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;

    pub(crate) fn snapshot() -> Snapshot {
        let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
            return Snapshot::default();
        };
        let mut sockets = Vec::new();
        for entry in dir.flatten() {
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<RawFd>().ok())
            else {
                continue;
            };
            if let Some(inode) = socket_inode(fd) {
                sockets.push((fd, inode));
            }
        }
        Snapshot { sockets }
    }

    fn socket_inode(fd: RawFd) -> Option<u64> {
        // SAFETY: an all-zero stat is a valid out-parameter; fstat fails on a
        // closed descriptor and touches nothing else.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return None;
        }
        (st.st_mode & libc::S_IFMT == libc::S_IFSOCK).then_some(st.st_ino)
    }

    /// The sockets in `after` that were not in `before`, whose peer matches.
    pub(crate) fn appeared(before: &Snapshot, after: &Snapshot, peer: Peer) -> Vec<RawFd> {
        after
            .sockets
            .iter()
            .filter(|s| !before.sockets.contains(s))
            .map(|(fd, _)| *fd)
            .filter(|fd| match (peer, address(*fd, libc::getpeername)) {
                (Peer::Any, Some(_)) => true,
                (Peer::Tcp(port), Some(Address::Tcp(p))) => p == port,
                (Peer::Unix, Some(Address::Unix)) => true,
                _ => false,
            })
            .collect()
    }

    #[derive(Debug, PartialEq, Eq)]
    pub(crate) enum Address {
        Tcp(u16),
        Unix,
    }

    type NameFn =
        unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

    pub(crate) fn address(fd: RawFd, name: NameFn) -> Option<Address> {
        // SAFETY: an all-zero sockaddr_storage is valid; the call writes at
        // most `len` bytes and fails on a descriptor that is not a socket.
        let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
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
                Some(Address::Tcp(u16::from_be(v4.sin_port)))
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this is a sockaddr_in6.
                let v6: &libc::sockaddr_in6 =
                    unsafe { &*(&addr as *const libc::sockaddr_storage).cast() };
                Some(Address::Tcp(u16::from_be(v6.sin6_port)))
            }
            libc::AF_UNIX => Some(Address::Unix),
            _ => None,
        }
    }

    /// Our local TCP port of `fd`.
    pub(crate) fn local_port(fd: RawFd) -> Option<u16> {
        match address(fd, libc::getsockname) {
            Some(Address::Tcp(port)) => Some(port),
            _ => None,
        }
    }

    fn set(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> bool {
        // SAFETY: a c_int option value of the right size.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            ) == 0
        }
    }

    /// Keepalive probes after `idle` without traffic, then every third of
    /// it, three times; and the same total as TCP_USER_TIMEOUT, which bounds
    /// data sent but never acknowledged. `false` if the kernel refused.
    pub(crate) fn set_keepalive(fd: RawFd, idle: Duration) -> bool {
        let secs = |d: Duration| libc::c_int::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX);
        let interval = (idle / 3).max(Duration::from_secs(1));
        let total = idle + interval * 3;
        let ms = libc::c_int::try_from(total.as_millis()).unwrap_or(i32::MAX);
        set(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)
            && set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(idle))
            && set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(interval))
            && set(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, 3)
            && set(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, ms)
    }

    /// The peer closed or reset the connection, or it has a pending error:
    /// whatever is sent on it now cannot reach the server.
    #[inline]
    pub(crate) fn hung_up(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no waiting. The system call itself, not
        // libc's `poll`, which is a cancellation point and costs several
        // times as much on every COMMIT.
        let n = unsafe { libc::syscall(libc::SYS_poll, &mut p as *mut libc::pollfd, 1, 0) };
        n == 1 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
    }

    /// Make a blocked read or write on `fd` return at once.
    pub(crate) fn shut_down(fd: RawFd) {
        // SAFETY: shutdown() does not free the descriptor; the caller holds
        // the guard that keeps it owned by the live connection.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub(crate) fn snapshot() -> Snapshot {
        Snapshot::default()
    }
    pub(crate) fn appeared(_: &Snapshot, _: &Snapshot, _: Peer) -> Vec<RawFd> {
        Vec::new()
    }
    pub(crate) fn local_port(_: RawFd) -> Option<u16> {
        None
    }
    pub(crate) fn set_keepalive(_: RawFd, _: Duration) -> bool {
        false
    }
    pub(crate) fn hung_up(_: RawFd) -> bool {
        false
    }
    pub(crate) fn shut_down(_: RawFd) {}
}

pub(crate) use imp::{appeared, hung_up, local_port, set_keepalive, shut_down, snapshot};

/// Where `url` says the driver connects: a TCP port (the scheme's default
/// when none is given), a unix socket, or unknown.
pub(crate) fn peer_of(url: &str, default_port: u16) -> Peer {
    let Some((_, rest)) = url.split_once("://") else {
        return Peer::Any;
    };
    let (authority, query) = match rest.split_once('?') {
        Some((before, query)) => (before.split('/').next().unwrap_or(""), query),
        None => (rest.split('/').next().unwrap_or(""), ""),
    };
    let socket_param = query.split('&').any(|kv| {
        kv.starts_with("unix_socket=") || kv.starts_with("host=/") || kv.starts_with("host=%2F")
    });
    if socket_param {
        return Peer::Unix;
    }
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hosts.is_empty() || hosts.starts_with('%') {
        // libpq's default is a unix socket; `%2F...` is a socket directory.
        return if url.starts_with("postgres") {
            Peer::Unix
        } else {
            Peer::Tcp(default_port)
        };
    }
    let mut ports = hosts.split(',').map(|host| {
        // `[::1]:5432`, `db:5432`, `db`
        let after_bracket = host.rsplit_once(']').map_or(host, |(_, p)| p);
        after_bracket
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .unwrap_or(default_port)
    });
    let first = ports.next().unwrap_or(default_port);
    if ports.all(|p| p == first) {
        Peer::Tcp(first)
    } else {
        Peer::Any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_from_the_url() {
        assert_eq!(
            peer_of("mysql://u:p@127.0.0.1:3307/db", 3306),
            Peer::Tcp(3307)
        );
        assert_eq!(peer_of("mysql://u@db/db", 3306), Peer::Tcp(3306));
        assert_eq!(
            peer_of("mysql://u@localhost/db?unix_socket=/run/mysqld.sock", 3306),
            Peer::Unix
        );
        assert_eq!(
            peer_of(
                "postgres://u@h1:5433,h2:5433/db?target_session_attrs=read-write",
                5432
            ),
            Peer::Tcp(5433)
        );
        assert_eq!(peer_of("postgres://u@h1:5433,h2:5434/db", 5432), Peer::Any);
        assert_eq!(peer_of("postgres:///db", 5432), Peer::Unix);
        assert_eq!(peer_of("postgres://u@[::1]:6543/db", 5432), Peer::Tcp(6543));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn finds_a_new_tcp_socket_and_its_state() {
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let before = snapshot();
        let client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let after = snapshot();
        assert_eq!(
            appeared(&before, &after, Peer::Tcp(port)),
            vec![client.as_raw_fd()]
        );
        assert!(appeared(&before, &after, Peer::Tcp(port.wrapping_add(1))).is_empty());
        assert_eq!(
            local_port(client.as_raw_fd()),
            Some(client.local_addr().unwrap().port())
        );
        assert!(set_keepalive(client.as_raw_fd(), Duration::from_secs(15)));
        assert!(!hung_up(client.as_raw_fd()));
        let (server_side, _) = listener.accept().unwrap();
        drop(server_side);
        // The FIN arrives at once on loopback.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !hung_up(client.as_raw_fd()) {
            assert!(std::time::Instant::now() < deadline, "no hang-up seen");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
