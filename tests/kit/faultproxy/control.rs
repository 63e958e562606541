//! The control protocol between the kit and the `db_txn_faultproxy`
//! process: one command per line on the proxy's standard input, one reply
//! per line on its standard output, sent once the command is in force.
//!
//! The proxy's first line is its greeting, [`greeting`]. A reply is `ok`,
//! a space and a value (a number, or for `stats` a [`Stats`] in
//! `key=value` form), or `err` and a message.

use std::net::SocketAddr;

use super::engine::{CommitFault, Cut, Stats};

/// The program's name.
pub const PROGRAM: &str = "db_txn_faultproxy";
/// Bumped when the protocol changes, so a stale binary is told apart.
pub const VERSION: u32 = 1;

/// The proxy's first line, saying where it listens.
pub fn greeting(addr: SocketAddr) -> String {
    format!("{PROGRAM} {VERSION} listening {addr}")
}

/// The listening address from a greeting of this [`VERSION`].
pub fn parse_greeting(line: &str) -> Result<SocketAddr, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [PROGRAM, version, "listening", addr] if *version == VERSION.to_string() => addr
            .parse()
            .map_err(|e| format!("bad address {addr:?}: {e}")),
        _ => Err(format!(
            "unexpected greeting {line:?}, expected `{}` (a binary from another \
             version of the kit? rebuild it with `cargo build --bin {PROGRAM}`)",
            greeting(SocketAddr::from(([127, 0, 0, 1], 0)))
        )),
    }
}

/// A command to the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Cut every open connection; replies how many.
    Cut(Cut),
    /// Black-hole the open connections; replies how many.
    BlackholeExisting,
    /// Black-hole everything, new connections included.
    BlackholeAll,
    /// Lift every black hole.
    Lift,
    /// Arm a one-shot `COMMIT` fault.
    Arm(CommitFault),
    /// Whether a `COMMIT` fault is armed and not fired: 1 or 0.
    Pending,
    /// Send new connections to another address.
    Retarget(SocketAddr),
    /// The [`Stats`].
    Stats,
}

impl Command {
    /// The command as a line (without the newline).
    pub fn to_line(self) -> String {
        match self {
            Command::Cut(Cut::Fin) => "cut fin".into(),
            Command::Cut(Cut::Rst) => "cut rst".into(),
            Command::BlackholeExisting => "blackhole existing".into(),
            Command::BlackholeAll => "blackhole all".into(),
            Command::Lift => "lift".into(),
            Command::Arm(CommitFault::CutAfter) => "commit cut-after".into(),
            Command::Arm(CommitFault::Drop) => "commit drop".into(),
            Command::Arm(CommitFault::Hold) => "commit hold".into(),
            Command::Pending => "commit pending".into(),
            Command::Retarget(addr) => format!("retarget {addr}"),
            Command::Stats => "stats".into(),
        }
    }

    /// Parses a line from [`to_line`](Self::to_line).
    pub fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        Ok(match words.as_slice() {
            ["cut", "fin"] => Command::Cut(Cut::Fin),
            ["cut", "rst"] => Command::Cut(Cut::Rst),
            ["blackhole", "existing"] => Command::BlackholeExisting,
            ["blackhole", "all"] => Command::BlackholeAll,
            ["lift"] => Command::Lift,
            ["commit", "cut-after"] => Command::Arm(CommitFault::CutAfter),
            ["commit", "drop"] => Command::Arm(CommitFault::Drop),
            ["commit", "hold"] => Command::Arm(CommitFault::Hold),
            ["commit", "pending"] => Command::Pending,
            ["retarget", addr] => Command::Retarget(
                addr.parse()
                    .map_err(|e| format!("bad address {addr:?}: {e}"))?,
            ),
            ["stats"] => Command::Stats,
            _ => return Err(format!("unknown command {line:?}")),
        })
    }
}

/// [`Stats`] as the value of a reply.
pub fn format_stats(s: &Stats) -> String {
    format!(
        "open={} accepted={} blackholed={} pending={} upstream={}",
        s.open,
        s.accepted,
        s.blackholed,
        u8::from(s.commit_fault_pending),
        s.upstream
    )
}

/// Parses [`format_stats`]'s text.
pub fn parse_stats(text: &str) -> Result<Stats, String> {
    let mut open = None;
    let mut accepted = None;
    let mut blackholed = None;
    let mut pending = None;
    let mut upstream = None;
    for pair in text.split_whitespace() {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("bad stats {text:?}"))?;
        let bad = |_| format!("bad {key} in stats {text:?}");
        match key {
            "open" => open = Some(value.parse().map_err(bad)?),
            "accepted" => accepted = Some(value.parse().map_err(bad)?),
            "blackholed" => blackholed = Some(value.parse().map_err(bad)?),
            "pending" => pending = Some(value == "1"),
            "upstream" => {
                upstream = Some(
                    value
                        .parse()
                        .map_err(|_| format!("bad upstream {value:?}"))?,
                )
            }
            _ => {}
        }
    }
    match (open, accepted, blackholed, pending, upstream) {
        (Some(open), Some(accepted), Some(blackholed), Some(pending), Some(upstream)) => {
            Ok(Stats {
                open,
                accepted,
                blackholed,
                commit_fault_pending: pending,
                upstream,
            })
        }
        _ => Err(format!("incomplete stats {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 4321));
        for c in [
            Command::Cut(Cut::Fin),
            Command::Cut(Cut::Rst),
            Command::BlackholeExisting,
            Command::BlackholeAll,
            Command::Lift,
            Command::Arm(CommitFault::CutAfter),
            Command::Arm(CommitFault::Drop),
            Command::Arm(CommitFault::Hold),
            Command::Pending,
            Command::Retarget(addr),
            Command::Stats,
        ] {
            assert_eq!(Command::parse(&c.to_line()), Ok(c));
        }
        assert!(Command::parse("cut sideways").is_err());
    }

    #[test]
    fn stats_and_greeting_round_trip() {
        let s = Stats {
            open: 3,
            accepted: 9,
            blackholed: 1,
            commit_fault_pending: true,
            upstream: SocketAddr::from(([127, 0, 0, 1], 5432)),
        };
        assert_eq!(parse_stats(&format_stats(&s)), Ok(s));
        let addr = SocketAddr::from(([127, 0, 0, 1], 40000));
        assert_eq!(parse_greeting(&greeting(addr)), Ok(addr));
        let stale = parse_greeting("db_txn_faultproxy 0 listening 127.0.0.1:1").unwrap_err();
        assert!(
            stale.contains("cargo build --bin db_txn_faultproxy"),
            "{stale}"
        );
    }
}
