//! A fault-injecting TCP proxy (std threads only): put it between a client
//! and a server, then cut the connections, black-hole them like a dead NAT,
//! or cut one right after its `COMMIT` reached the server.
//!
//! Each client connection gets its own upstream connection and two relay
//! threads (one per direction). The proxy reads whatever arrives and decides
//! per chunk what to do with it, so held bytes are never lost: a
//! black-holed chunk is delivered when the black hole is lifted.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// A TCP proxy on 127.0.0.1 in front of one upstream address.
///
/// Dropping it closes every connection and stops it.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// State shared by the proxy's threads.
struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Signalled when the black hole is lifted, a connection is closed, or
    /// the proxy stops.
    changed: Condvar,
    /// `cut_after_commit` is armed.
    commit_armed: AtomicBool,
}

struct State {
    stopping: bool,
    blackhole: bool,
    next_id: u64,
    conns: HashMap<u64, Arc<Conn>>,
}

/// One client connection and its upstream connection.
struct Conn {
    client: TcpStream,
    server: Mutex<Option<TcpStream>>,
    closed: AtomicBool,
    /// The next reply from the server is swallowed and the connection cut.
    swallow_reply: AtomicBool,
    /// Nothing is relayed on this connection any more (`blackhole_existing`).
    blackholed: AtomicBool,
}

impl Proxy {
    /// Starts a proxy on 127.0.0.1 (a free port) relaying to `upstream`.
    pub fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State {
                stopping: false,
                blackhole: false,
                next_id: 0,
                conns: HashMap::new(),
            }),
            changed: Condvar::new(),
            commit_armed: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("proxy-{}-accept", addr.port()))
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every live connection on both sides (the client and the server
    /// each see the connection end). New connections work as before.
    pub fn cut_all(&self) {
        let conns: Vec<Arc<Conn>> = self.shared.lock().conns.values().cloned().collect();
        for conn in conns {
            self.shared.close(&conn);
        }
    }

    /// On: no byte is relayed in either direction, on existing and new
    /// connections, while the sockets stay open (like a dead NAT or a
    /// pulled cable); a new connection is accepted but does not reach the
    /// server. Off: everything held is delivered and relaying resumes.
    pub fn set_blackhole(&self, on: bool) {
        self.shared.lock().blackhole = on;
        self.shared.changed.notify_all();
    }

    /// Black-holes the connections open now, for good, while new ones work:
    /// a NAT or firewall that forgot its idle mappings. Their sockets stay
    /// open; nothing they send arrives, nothing comes back.
    pub fn blackhole_existing(&self) {
        for conn in self.shared.lock().conns.values() {
            conn.blackholed.store(true, Ordering::SeqCst);
        }
        self.shared.changed.notify_all();
    }

    /// Arms a one-shot fault: the next client chunk holding a `COMMIT`
    /// (MySQL `COM_QUERY`, PostgreSQL simple `Q` or extended-protocol `P`)
    /// is forwarded to the server, the server's reply is read (so the commit
    /// happened) but not relayed, and the connection is closed on both
    /// sides. The client sees its `COMMIT` fail with a connection error.
    pub fn cut_after_commit(&self) {
        self.shared.commit_armed.store(true, Ordering::SeqCst);
    }

    /// Whether [`cut_after_commit`](Self::cut_after_commit) is still armed
    /// (no `COMMIT` went through since).
    pub fn commit_cut_pending(&self) -> bool {
        self.shared.commit_armed.load(Ordering::SeqCst)
    }

    /// How many client connections are open through the proxy.
    pub fn live_connections(&self) -> usize {
        self.shared
            .lock()
            .conns
            .values()
            .filter(|c| !c.closed.load(Ordering::SeqCst))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        self.cut_all();
        // Wake the acceptor up: it sees `stopping` and returns.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shuts both sockets of `conn` down, which ends its relay threads.
    fn close(&self, conn: &Conn) {
        conn.closed.store(true, Ordering::SeqCst);
        let _ = conn.client.shutdown(Shutdown::Both);
        if let Some(server) = &*conn.server.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = server.shutdown(Shutdown::Both);
        }
        // Taking the lock orders this after any waiter's check of `closed`.
        drop(self.lock());
        self.changed.notify_all();
    }

    /// Blocks while the black hole is on; false if `conn` was closed or the
    /// proxy stops meanwhile.
    fn wait_open_path(&self, conn: &Conn) -> bool {
        let mut state = self.lock();
        loop {
            if state.stopping || conn.closed.load(Ordering::SeqCst) {
                return false;
            }
            if !state.blackhole && !conn.blackholed.load(Ordering::SeqCst) {
                return true;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.lock().stopping {
            return;
        }
        let Ok(client) = client else {
            // E.g. out of file descriptors: do not spin.
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        let _ = client.set_nodelay(true);
        let Ok(client_side) = client.try_clone() else {
            continue;
        };
        let conn = Arc::new(Conn {
            client,
            server: Mutex::new(None),
            closed: AtomicBool::new(false),
            swallow_reply: AtomicBool::new(false),
            blackholed: AtomicBool::new(false),
        });
        let id = {
            let mut state = shared.lock();
            let id = state.next_id;
            state.next_id += 1;
            state.conns.insert(id, conn.clone());
            id
        };
        let spawned = thread::Builder::new()
            .name(format!("proxy-conn-{id}"))
            .spawn({
                let shared = shared.clone();
                let conn = conn.clone();
                move || serve(id, client_side, conn, shared)
            });
        if spawned.is_err() {
            shared.close(&conn);
            shared.lock().conns.remove(&id);
        }
    }
}

/// Connects upstream (once no black hole is in the way) and relays both
/// directions until the connection ends.
fn serve(id: u64, client: TcpStream, conn: Arc<Conn>, shared: Arc<Shared>) {
    if shared.wait_open_path(&conn) {
        if let Ok(server) = TcpStream::connect(shared.upstream) {
            let _ = server.set_nodelay(true);
            let clones = (server.try_clone(), server.try_clone(), client.try_clone());
            if let (Ok(for_conn), Ok(server_read), Ok(client_write)) = clones {
                *conn.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(for_conn);
                // Closed meanwhile: `close` may have missed the server side.
                if conn.closed.load(Ordering::SeqCst) {
                    let _ = server.shutdown(Shutdown::Both);
                }
                let back = {
                    let (shared, conn) = (shared.clone(), conn.clone());
                    thread::Builder::new()
                        .name(format!("proxy-conn-{id}-back"))
                        .spawn(move || relay(server_read, client_write, false, &conn, &shared))
                };
                relay(client, server, true, &conn, &shared);
                if let Ok(back) = back {
                    let _ = back.join();
                }
            }
        }
    }
    shared.close(&conn);
    shared.lock().conns.remove(&id);
}

/// Copies `from` to `to` chunk by chunk, applying the faults; closes the
/// connection when either side ends.
fn relay(mut from: TcpStream, mut to: TcpStream, upstream: bool, conn: &Conn, shared: &Shared) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if !shared.wait_open_path(conn) {
            break;
        }
        let chunk = &buf[..n];
        if upstream {
            if shared.commit_armed.load(Ordering::SeqCst)
                && is_commit(chunk)
                && shared.commit_armed.swap(false, Ordering::SeqCst)
            {
                // Set before forwarding, so the reply cannot slip through.
                conn.swallow_reply.store(true, Ordering::SeqCst);
            }
        } else if conn.swallow_reply.load(Ordering::SeqCst) {
            // The server answered the COMMIT: it is done. Drop the answer.
            break;
        }
        if to.write_all(chunk).is_err() {
            break;
        }
    }
    shared.close(conn);
}

/// Whether a client chunk holds a `COMMIT` statement, in the MySQL or the
/// PostgreSQL protocol.
pub fn is_commit(chunk: &[u8]) -> bool {
    mysql_commit(chunk) || pg_commit(chunk)
}

/// MySQL packets: 3-byte length, 1-byte sequence, payload; `COM_QUERY` is
/// payload byte 0x03 followed by the statement.
fn mysql_commit(chunk: &[u8]) -> bool {
    let mut rest = chunk;
    while rest.len() >= 4 {
        let len = usize::from(rest[0]) | usize::from(rest[1]) << 8 | usize::from(rest[2]) << 16;
        let Some(payload) = rest.get(4..4 + len) else {
            return false;
        };
        if payload.first() == Some(&0x03) && is_commit_sql(&payload[1..]) {
            return true;
        }
        rest = &rest[4 + len..];
    }
    false
}

/// PostgreSQL messages: type byte, 4-byte big-endian length (counting
/// itself), body; `Q` holds a statement, `P` a statement name then the
/// statement, each NUL-terminated.
fn pg_commit(chunk: &[u8]) -> bool {
    let mut rest = chunk;
    while rest.len() >= 5 {
        let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
        if len < 4 {
            return false;
        }
        let Some(body) = rest.get(5..1 + len) else {
            return false;
        };
        let mut strings = body.split(|b| *b == 0);
        let sql = match rest[0] {
            b'Q' => strings.next(),
            b'P' => strings.nth(1),
            _ => None,
        };
        if sql.is_some_and(is_commit_sql) {
            return true;
        }
        rest = &rest[1 + len..];
    }
    false
}

/// `COMMIT`, any case, maybe with surrounding blanks, a trailing `;` or
/// more words (`COMMIT WORK`).
fn is_commit_sql(sql: &[u8]) -> bool {
    let sql = sql.trim_ascii();
    let sql = sql.strip_suffix(b";").unwrap_or(sql).trim_ascii();
    sql.len() >= 6
        && sql[..6].eq_ignore_ascii_case(b"COMMIT")
        && !matches!(sql.get(6), Some(c) if !c.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_commit() {
        let mut my = vec![7, 0, 0, 0, 0x03];
        my.extend_from_slice(b"COMMIT");
        assert!(is_commit(&my));
        let mut pg = vec![b'Q', 0, 0, 0, 11];
        pg.extend_from_slice(b"commit\0");
        assert!(is_commit(&pg));
        let mut no = vec![b'Q', 0, 0, 0, 14];
        no.extend_from_slice(b"COMMITTED\0");
        assert!(!is_commit(&no));
        assert!(!is_commit(b"SELECT 1"));
    }
}
