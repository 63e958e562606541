//! Free TCP ports for the kit's servers.
//!
//! A server must get a port it can bind again after a restart or a crash,
//! while it is down. A port from the kernel's ephemeral range (what binding
//! port 0 returns) may meanwhile become the local port of some outgoing
//! connection, and the server could then not bind it again. So the kit
//! picks ports *below* the ephemeral range (`ip_local_port_range`), which
//! the kernel never hands out on its own, at random, skipping the ones this
//! process already used and checking that 127.0.0.1 can bind each.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

/// Lowest port the kit hands out.
const LOWEST: u16 = 10_000;

/// Ports already handed out by this process.
static USED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port of 127.0.0.1 that is free now, outside the ephemeral range, and
/// not handed out before by this process.
///
/// # Panics
/// If no such port is found in 1000 tries.
pub fn free_port() -> u16 {
    let (low, high) = range();
    let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
    let used = used.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = low + (random() % u64::from(high - low)) as u16;
        if used.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            used.insert(port);
            return port;
        }
    }
    panic!("no free TCP port found in {low}..{high}");
}

/// The range to pick from: [`LOWEST`] up to the start of the ephemeral
/// range, or above its end if that leaves more room.
fn range() -> (u16, u16) {
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    let below = ephemeral.0.saturating_sub(LOWEST);
    let above = u16::MAX - ephemeral.1;
    if below >= above {
        (LOWEST, ephemeral.0.max(LOWEST + 1))
    } else {
        (ephemeral.1 + 1, u16::MAX)
    }
}

/// A random number from the standard library's randomly seeded hasher.
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}
