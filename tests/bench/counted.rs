//! What a stretch of transactions costs besides time, per transaction: the
//! round trips the client made, and what the server wrote.
//!
//! * Round trips: the data segments the client sent on its sockets to the
//!   server's port (`TCP_INFO` `tcpi_data_segs_out`), the growth of each
//!   socket over the stretch summed (a socket opened meanwhile counts from
//!   zero, one closed meanwhile drops out). Every request of these drivers
//!   fits one segment and waits for its answer.
//! * What the server wrote: counters the caller reads on the server (rows
//!   written, redo or WAL bytes). They are server-wide, so nothing else
//!   may run meanwhile, and what reading them adds by itself is measured
//!   and taken out.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt;

use serde::{Deserialize, Serialize};

use crate::contenders::CallError;

/// Per transaction, over a stretch where only one variant ran.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Counted {
    pub round_trips: f64,
    /// Rows inserted, updated and deleted (MariaDB only).
    pub rows: Option<f64>,
    /// Redo (MariaDB) or WAL (PostgreSQL) bytes.
    pub log_bytes: f64,
}

/// Server-side counters: (rows written, if the server counts them; log
/// bytes written).
pub type ServerCounters<'a> = &'a dyn Fn() -> (Option<u64>, u64);

/// Data segments sent so far on each socket of this process to `port`, by
/// the socket's inode (a descriptor number may be reused meanwhile).
fn segments(port: u16) -> HashMap<u64, u64> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return HashMap::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| peer_port(fd) == Some(port))
        .filter_map(|fd| {
            let inode = std::fs::metadata(format!("/proc/self/fd/{fd}")).ok()?.ino();
            Some((inode, u64::from(tcp_info(fd)?.tcpi_data_segs_out)))
        })
        .collect()
}

/// Segments sent to `port` since `before`.
fn segments_since(before: &HashMap<u64, u64>, port: u16) -> u64 {
    segments(port)
        .iter()
        .map(|(inode, now)| now.saturating_sub(before.get(inode).copied().unwrap_or(0)))
        .sum()
}

fn peer_port(fd: RawFd) -> Option<u16> {
    // SAFETY: a zeroed sockaddr_in is valid; getpeername writes at most `len` bytes.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: as above, on a descriptor of this process (any kind).
    let rc =
        unsafe { libc::getpeername(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len) };
    (rc == 0 && i32::from(addr.sin_family) == libc::AF_INET).then(|| u16::from_be(addr.sin_port))
}

fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // SAFETY: a zeroed tcp_info is valid; getsockopt writes at most `len` bytes.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: as above.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(info)
}

/// Runs `call(i)` for `i` in `0..n`, alone, and divides what the counters
/// moved by `n`. Stops at the first error, which it returns.
pub fn count(
    port: u16,
    server: ServerCounters<'_>,
    n: u64,
    call: &mut dyn FnMut(u64) -> Result<(), CallError>,
) -> Result<Counted, CallError> {
    // What reading the counters adds by itself, taken out below.
    let (r0, l0) = server();
    let (r1, l1) = server();
    let segs = segments(port);
    let (rows, log) = server();
    for i in 0..n {
        call(i)?;
    }
    let (rows_after, log_after) = server();
    // The two counter reads in the stretch run on connections of their own,
    // closed again: they are no socket of this process any more.
    let sent = segments_since(&segs, port);
    let n = n.max(1) as f64;
    let per = |d: u64, own: u64| d.saturating_sub(own) as f64 / n;
    let own_rows = r0.zip(r1).map_or(0, |(a, b)| b.saturating_sub(a));
    Ok(Counted {
        round_trips: sent as f64 / n,
        rows: rows
            .zip(rows_after)
            .map(|(a, b)| per(b.saturating_sub(a), own_rows)),
        log_bytes: per(log_after.saturating_sub(log), l1.saturating_sub(l0)),
    })
}
