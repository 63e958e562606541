//! A fault-injecting TCP proxy in the test process (std threads only): put
//! it between a client and a server, then cut the connections, black-hole
//! them like a dead NAT, or cut one right after its `COMMIT` reached the
//! server.
//!
//! A proxy, NAT or load balancer is another process in a real deployment,
//! and the server sees its address: fault tests of those rows use
//! [`crate::ProxyProcess`], which runs the same relay in a process of its
//! own and offers more faults. This one suits the tests that only need a
//! link to break.
//!
//! Each client connection gets its own upstream connection and two relay
//! threads (one per direction). A black hole holds the bytes (and the end
//! of a stream) and delivers them when lifted.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use crate::faultproxy::engine::{CommitFault, Cut, Engine};

/// A TCP proxy on 127.0.0.1 in front of one upstream address.
///
/// Dropping it closes every connection and stops it.
pub struct Proxy {
    engine: Engine,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (a free port) relaying to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        Ok(Proxy {
            engine: Engine::start(listen, upstream)?,
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.engine.addr()
    }

    /// The port clients connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    /// Closes every live connection on both sides (the client and the server
    /// each see the connection end); returns once they are closed. New
    /// connections work as before.
    pub fn cut_all(&self) {
        self.engine.cut_all(Cut::Fin);
    }

    /// On: no byte is relayed in either direction, on existing and new
    /// connections, while the sockets stay open (like a dead NAT or a
    /// pulled cable); a new connection is accepted but does not reach the
    /// server. Off: every black hole is lifted (this one and
    /// [`blackhole_existing`](Self::blackhole_existing)'s), everything held
    /// is delivered and relaying resumes.
    pub fn set_blackhole(&self, on: bool) {
        self.engine.set_blackhole_all(on);
    }

    /// Black-holes the connections open now while new ones work: a NAT or
    /// firewall that forgot its idle mappings. Their sockets stay open;
    /// nothing they send arrives, nothing comes back, until
    /// [`set_blackhole`](Self::set_blackhole)`(false)`.
    pub fn blackhole_existing(&self) {
        self.engine.blackhole_existing();
    }

    /// Arms a one-shot fault: the next `COMMIT` a client sends (MySQL
    /// `COM_QUERY`, PostgreSQL simple query or extended-protocol
    /// `Execute`) is forwarded to the server, the server's reply is read
    /// (so the commit happened) but not relayed, and the connection is
    /// closed on both sides. The client sees its `COMMIT` fail with a
    /// connection error.
    pub fn cut_after_commit(&self) {
        self.engine.arm(CommitFault::CutAfter);
    }

    /// Whether [`cut_after_commit`](Self::cut_after_commit) is still armed
    /// (no `COMMIT` went through since).
    pub fn commit_cut_pending(&self) -> bool {
        self.engine.commit_fault_pending()
    }

    /// How many client connections are open through the proxy.
    pub fn live_connections(&self) -> usize {
        self.engine.stats().open
    }
}
