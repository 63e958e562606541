//! The relay of the fault proxy, and the faults it applies (std threads
//! only, plus `setsockopt` for a reset).
//!
//! Each client connection gets an upstream connection, chosen when the
//! client connection is accepted, and two relay threads, one per direction.
//! A relay reads whatever arrives and forwards it unless a fault says
//! otherwise. Every fault is in force when the call that applies it
//! returns: a cut returns once the sockets are closed, a black hole once no
//! chunk is being forwarded on the connections it covers.
//!
//! A black hole holds the bytes: a relay keeps the one chunk it has read
//! and stops reading, so the rest waits in the kernel's buffers, and the
//! end of a stream (a peer closing) waits too. Lifting the black hole
//! delivers everything in order, as TCP does once a broken path heals.
//! While it lasts, the proxy's kernel still acknowledges what it receives,
//! so unlike a real black hole it does not make TCP keepalive or
//! `TCP_USER_TIMEOUT` fire: only timeouts above TCP notice it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::wire::CommitDetector;

/// How long a fault waits for the connections it acts on to settle.
const SETTLE: Duration = Duration::from_secs(10);
/// How long connecting upstream may take.
const CONNECT: Duration = Duration::from_secs(10);

/// How a connection is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// An orderly close: both peers read the end of the stream.
    Fin,
    /// An abortive close: both peers get a reset (`ECONNRESET`).
    Rst,
}

/// A one-shot fault on the next `COMMIT` a client sends (see
/// [`super::wire`] for what counts as one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitFault {
    /// The `COMMIT` reaches the server; its reply is swallowed and the
    /// connection cut (`Fin`): the client cannot know it committed.
    CutAfter,
    /// The `COMMIT` never reaches the server: the connection is cut (`Fin`)
    /// where the `COMMIT` message begins, what came before it forwarded.
    Drop,
    /// The `COMMIT` is held: what came before it is forwarded, then the
    /// connection is black-holed from the `COMMIT` on, as by
    /// [`Engine::blackhole_existing`]. The server's session waits in its
    /// transaction; lifting the black hole delivers the `COMMIT`.
    Hold,
}

/// What the proxy holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Client connections whose sockets are open (black-holed ones
    /// included).
    pub open: usize,
    /// Client connections accepted since the start.
    pub accepted: u64,
    /// Open connections on which nothing is forwarded now.
    pub blackholed: usize,
    /// A `COMMIT` fault is armed and has not fired yet (a `CutAfter`
    /// fires when the server's reply has come, or the connection ended).
    pub commit_fault_pending: bool,
    /// Where new connections go.
    pub upstream: SocketAddr,
}

/// A running proxy. Dropping it cuts every connection and stops it.
pub struct Engine {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled on every change a waiting thread may care about.
    changed: Condvar,
}

struct State {
    stopping: bool,
    upstream: SocketAddr,
    blackhole_all: bool,
    commit_fault: Option<CommitFault>,
    /// `COMMIT`s forwarded under [`CommitFault::CutAfter`] whose reply has
    /// not come yet (nor their connection ended): the fault is still
    /// pending until then, so that who waits for it knows the server is
    /// done with the `COMMIT`.
    replies_awaited: usize,
    next_id: u64,
    /// Connections whose sockets are open, by id.
    conns: HashMap<u64, Entry>,
}

impl State {
    fn commit_fault_pending(&self) -> bool {
        self.commit_fault.is_some() || self.replies_awaited > 0
    }
}

/// The proxy's record of an open connection.
struct Entry {
    conn: Weak<Conn>,
    /// Black-holed by [`Engine::blackhole_existing`].
    blackholed: bool,
    /// Chunks being forwarded now.
    in_flight: usize,
}

/// One client connection and its upstream connection. The sockets close
/// when the last relay thread lets go of it.
struct Conn {
    id: u64,
    upstream: SocketAddr,
    client: TcpStream,
    server: OnceLock<TcpStream>,
    /// 0 while open, then how it was cut: 1 `Fin`, 2 `Rst`.
    cut: AtomicU8,
    /// The next chunk from the server is a `COMMIT`'s reply, to swallow
    /// (set and cleared with the proxy's count of replies awaited).
    swallow_reply: AtomicBool,
    /// Last field: dropped after the sockets are closed.
    _gone: Gone,
}

/// Removes its connection from the proxy's records when dropped.
struct Gone {
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for Gone {
    fn drop(&mut self) {
        self.shared.lock().conns.remove(&self.id);
        self.shared.changed.notify_all();
    }
}

impl Engine {
    /// Listens on `listen` (port 0: any free port) and relays every
    /// connection to `upstream`.
    pub fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Engine> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                stopping: false,
                upstream,
                blackhole_all: false,
                commit_fault: None,
                replies_awaited: 0,
                next_id: 0,
                conns: HashMap::new(),
            }),
            changed: Condvar::new(),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("proxy-{}-accept", addr.port()))
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(Engine {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every open connection on both sides; returns how many, once
    /// their sockets are closed. New connections work as before.
    pub fn cut_all(&self, how: Cut) -> usize {
        let (ids, conns): (Vec<u64>, Vec<Arc<Conn>>) = {
            let st = self.shared.lock();
            let ids = st.conns.keys().copied().collect();
            (
                ids,
                st.conns.values().filter_map(|e| e.conn.upgrade()).collect(),
            )
        };
        for conn in &conns {
            self.shared.close(conn, how);
        }
        // Outside the lock: the last reference closes the sockets.
        drop(conns);
        self.shared
            .wait(|st| ids.iter().all(|id| !st.conns.contains_key(id)));
        ids.len()
    }

    /// Black-holes the connections open now, in both directions, until
    /// [`set_blackhole_all`](Self::set_blackhole_all)`(false)`; new
    /// connections work. Returns how many.
    pub fn blackhole_existing(&self) -> usize {
        let mut st = self.shared.lock();
        for e in st.conns.values_mut() {
            e.blackholed = true;
        }
        let n = st.conns.len();
        drop(st);
        self.shared.changed.notify_all();
        self.shared
            .wait(|st| st.conns.values().all(|e| e.in_flight == 0));
        n
    }

    /// On: nothing is forwarded on any connection, and a new connection is
    /// accepted but not connected upstream. Off: lifts every black hole
    /// (this one and [`blackhole_existing`](Self::blackhole_existing)'s);
    /// what was held is delivered.
    pub fn set_blackhole_all(&self, on: bool) {
        let mut st = self.shared.lock();
        st.blackhole_all = on;
        if !on {
            for e in st.conns.values_mut() {
                e.blackholed = false;
            }
        }
        drop(st);
        self.shared.changed.notify_all();
        if on {
            self.shared
                .wait(|st| st.conns.values().all(|e| e.in_flight == 0));
        }
    }

    /// Arms a one-shot fault for the next `COMMIT` of any connection
    /// (replacing one still armed).
    pub fn arm(&self, fault: CommitFault) {
        self.shared.lock().commit_fault = Some(fault);
    }

    /// Whether an armed `COMMIT` fault has not fired yet; a
    /// [`CommitFault::CutAfter`] fires when the server's reply has come (or
    /// the connection ended before it).
    pub fn commit_fault_pending(&self) -> bool {
        self.shared.lock().commit_fault_pending()
    }

    /// New connections go to `upstream`; open ones stay where they are.
    pub fn retarget(&self, upstream: SocketAddr) {
        self.shared.lock().upstream = upstream;
    }

    /// What the proxy holds now.
    pub fn stats(&self) -> Stats {
        let st = self.shared.lock();
        Stats {
            open: st.conns.len(),
            accepted: st.next_id,
            blackholed: st
                .conns
                .values()
                .filter(|e| st.blackhole_all || e.blackholed)
                .count(),
            commit_fault_pending: st.commit_fault_pending(),
            upstream: st.upstream,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.changed.notify_all();
        self.cut_all(Cut::Fin);
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

    /// Waits up to [`SETTLE`] until `done` holds.
    fn wait(&self, done: impl Fn(&State) -> bool) -> bool {
        let deadline = Instant::now() + SETTLE;
        let mut st = self.lock();
        loop {
            if done(&st) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Cuts `conn` (the first cut wins) and wakes its threads up.
    fn close(&self, conn: &Conn, how: Cut) {
        let code = match how {
            Cut::Fin => 1,
            Cut::Rst => 2,
        };
        if conn
            .cut
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            cut_socket(&conn.client, how);
            if let Some(server) = conn.server.get() {
                cut_socket(server, how);
            }
        }
        self.reply_done(conn);
        // Taking the lock orders this after any waiter's check of `cut`.
        drop(self.lock());
        self.changed.notify_all();
    }

    /// Blocks while a black hole covers `conn`; false if it was cut or the
    /// proxy stops meanwhile. With `flight`, the caller is about to
    /// forward a chunk and must call [`landed`](Self::landed) after.
    fn wait_path(&self, conn: &Conn, flight: bool) -> bool {
        let mut st = self.lock();
        loop {
            if st.stopping || conn.cut.load(Ordering::SeqCst) != 0 {
                return false;
            }
            let blackhole_all = st.blackhole_all;
            match st.conns.get_mut(&conn.id) {
                None => return false,
                Some(e) if !blackhole_all && !e.blackholed => {
                    e.in_flight += usize::from(flight);
                    return true;
                }
                Some(_) => {}
            }
            st = self.changed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// A chunk announced by [`wait_path`](Self::wait_path) was forwarded.
    fn landed(&self, conn: &Conn) {
        if let Some(e) = self.lock().conns.get_mut(&conn.id) {
            e.in_flight -= 1;
        }
        self.changed.notify_all();
    }

    /// Black-holes `conn` from the middle of the chunk being forwarded (the
    /// chunk's first part counted as landed) and waits for the lift; false
    /// if it was cut meanwhile. Either way the chunk is in flight again on
    /// return, as [`relay`] expects.
    fn hold(&self, conn: &Conn) -> bool {
        if let Some(e) = self.lock().conns.get_mut(&conn.id) {
            e.blackholed = true;
            e.in_flight -= 1;
        }
        self.changed.notify_all();
        let lifted = self.wait_path(conn, true);
        if !lifted {
            if let Some(e) = self.lock().conns.get_mut(&conn.id) {
                e.in_flight += 1;
            }
        }
        lifted
    }

    /// Takes the armed `COMMIT` fault, if any, for `conn`'s `COMMIT`. A
    /// `CutAfter` marks `conn` to swallow the reply, and the fault stays
    /// pending until [`reply_done`](Self::reply_done); both under the lock,
    /// and only while `conn` is not cut (a `close` sets `cut` before its
    /// `reply_done`), so every count taken is given back.
    fn take_commit_fault(&self, conn: &Conn) -> Option<CommitFault> {
        let mut st = self.lock();
        let fault = st.commit_fault.take();
        if fault == Some(CommitFault::CutAfter) && conn.cut.load(Ordering::SeqCst) == 0 {
            conn.swallow_reply.store(true, Ordering::SeqCst);
            st.replies_awaited += 1;
        }
        fault
    }

    /// The reply to `conn`'s `CutAfter` `COMMIT` came, or the connection
    /// ends: true if one was awaited (and now is not). The flag is read
    /// under the lock: a `close` racing with
    /// [`take_commit_fault`](Self::take_commit_fault) either comes first
    /// (and the fault sees `cut`) or sees the flag set.
    fn reply_done(&self, conn: &Conn) -> bool {
        let mut st = self.lock();
        if !conn.swallow_reply.swap(false, Ordering::SeqCst) {
            return false;
        }
        st.replies_awaited -= 1;
        drop(st);
        self.changed.notify_all();
        true
    }
}

/// Applies a cut to one socket. For a reset: a zero linger time makes the
/// final close send a reset, and shutting the reading side down wakes the
/// relay threads up without sending anything, so they let go of the
/// socket and it closes.
fn cut_socket(sock: &TcpStream, how: Cut) {
    match how {
        Cut::Fin => {
            let _ = sock.shutdown(Shutdown::Both);
        }
        Cut::Rst => {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a plain system call on an open socket, with a
            // pointer to a value that outlives it.
            unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
            let _ = sock.shutdown(Shutdown::Read);
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
        let conn = {
            let mut st = shared.lock();
            let id = st.next_id;
            st.next_id += 1;
            let conn = Arc::new(Conn {
                id,
                upstream: st.upstream,
                client,
                server: OnceLock::new(),
                cut: AtomicU8::new(0),
                swallow_reply: AtomicBool::new(false),
                _gone: Gone {
                    id,
                    shared: shared.clone(),
                },
            });
            st.conns.insert(
                id,
                Entry {
                    conn: Arc::downgrade(&conn),
                    blackholed: false,
                    in_flight: 0,
                },
            );
            conn
        };
        let shared = shared.clone();
        // If the thread cannot start, the closure is dropped and with it
        // the connection.
        let _ = thread::Builder::new()
            .name(format!("proxy-conn-{}", conn.id))
            .spawn(move || serve(conn, shared));
    }
}

/// Connects upstream (once no black hole is in the way) and relays both
/// directions until the connection ends.
fn serve(conn: Arc<Conn>, shared: Arc<Shared>) {
    if shared.wait_path(&conn, false) {
        if let Ok(server) = TcpStream::connect_timeout(&conn.upstream, CONNECT) {
            let _ = server.set_nodelay(true);
            let server = conn.server.get_or_init(|| server);
            // Cut meanwhile: `close` may have missed the server side.
            match conn.cut.load(Ordering::SeqCst) {
                0 => {}
                1 => cut_socket(server, Cut::Fin),
                _ => cut_socket(server, Cut::Rst),
            }
            let back = {
                let (conn, shared) = (conn.clone(), shared.clone());
                thread::Builder::new()
                    .name(format!("proxy-conn-{}-back", conn.id))
                    .spawn(move || relay(&conn, &shared, false))
            };
            if let Ok(back) = back {
                relay(&conn, &shared, true);
                let _ = back.join();
            }
        }
    }
    shared.close(&conn, Cut::Fin);
}

/// What to do after a chunk.
enum Next {
    Continue,
    Stop,
}

/// Relays one direction chunk by chunk, applying the faults; cuts the
/// connection when either side ends.
fn relay(conn: &Conn, shared: &Shared, upstream: bool) {
    let Some(server) = conn.server.get() else {
        return;
    };
    let (mut from, mut to) = if upstream {
        (&conn.client, server)
    } else {
        (server, &conn.client)
    };
    let mut detector = CommitDetector::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        // The end of the stream waits out a black hole like the data.
        if !shared.wait_path(conn, true) {
            break;
        }
        let next = if n == 0 {
            Next::Stop
        } else if upstream {
            to_server(&buf[..n], &mut detector, &mut to, conn, shared)
        } else if conn.swallow_reply.load(Ordering::SeqCst) && shared.reply_done(conn) {
            // The server answered the COMMIT: it is done. Drop the answer.
            Next::Stop
        } else {
            forward(&mut to, &buf[..n])
        };
        shared.landed(conn);
        if let Next::Stop = next {
            break;
        }
    }
    shared.close(conn, Cut::Fin);
}

/// Forwards a client chunk, applying an armed `COMMIT` fault if the chunk
/// completes a `COMMIT`.
fn to_server(
    chunk: &[u8],
    detector: &mut CommitDetector,
    to: &mut &TcpStream,
    conn: &Conn,
    shared: &Shared,
) -> Next {
    let fault = match detector.feed(chunk) {
        Some(at) => shared.take_commit_fault(conn).map(|f| (f, at)),
        None => None,
    };
    match fault {
        Some((CommitFault::Drop, at)) => {
            let _ = forward(to, &chunk[..at]);
            Next::Stop
        }
        Some((CommitFault::Hold, at)) => match forward(to, &chunk[..at]) {
            Next::Continue if shared.hold(conn) => forward(to, &chunk[at..]),
            _ => Next::Stop,
        },
        // `swallow_reply` was set as the fault was taken, before
        // forwarding, so the reply cannot slip through.
        Some((CommitFault::CutAfter, _)) => forward(to, chunk),
        None => forward(to, chunk),
    }
}

fn forward(to: &mut &TcpStream, chunk: &[u8]) -> Next {
    match to.write_all(chunk) {
        Ok(()) => Next::Continue,
        Err(_) => Next::Stop,
    }
}
