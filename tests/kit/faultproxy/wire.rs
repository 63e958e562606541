//! Finding the `COMMIT` in the byte stream a client sends to its server,
//! for the MySQL and the PostgreSQL wire protocols.
//!
//! The stream is split into the protocol's messages (a message may span
//! several reads, and a read may hold several messages), so a `COMMIT` is
//! found wherever the reads happen to end. What counts as the `COMMIT` is
//! the message that makes the server commit:
//!
//! * MySQL: a `COM_QUERY` command (sequence number 0, command byte `0x03`)
//!   whose statement is `COMMIT`. Not covered: a `COMMIT` prepared with
//!   `COM_STMT_PREPARE`, a `COMMIT` inside a multi-statement query, the
//!   compressed protocol.
//! * PostgreSQL: a simple query (`Q`) whose statement is `COMMIT` (or
//!   `END`), or, in the extended protocol, the `Execute` (`E`) of a portal
//!   bound (`B`) to a statement parsed (`P`) from `COMMIT`, named or not.
//!   Not covered: a `COMMIT` inside a multi-statement simple query.
//!
//! The protocol is told from the client's first bytes: a PostgreSQL client
//! speaks first with a start-up, SSL, GSS or cancel request, whose length
//! and code have a fixed form; a MySQL client speaks only after the
//! server's greeting, and its packets never have that form. After an
//! accepted SSL or GSS request the stream is encrypted: the detector sees
//! no valid start-up message and stops looking.

use std::collections::HashSet;

/// At most this much of a message body is kept to look at: enough for the
/// statement and portal names and the start of a statement.
const KEEP: usize = 4096;
/// PostgreSQL's protocol 3.0 start-up message code.
const PG_STARTUP: u32 = 196_608;
/// PostgreSQL's SSL, GSS encryption and cancel request codes.
const PG_REQUESTS: [u32; 3] = [80_877_103, 80_877_104, 80_877_102];

/// Follows one client-to-server stream and reports its `COMMIT`s.
#[derive(Debug, Default)]
pub struct CommitDetector {
    /// The first bytes, until the protocol is known.
    first: Vec<u8>,
    proto: Option<Proto>,
    /// The message being read: its header so far, then its body.
    header: Vec<u8>,
    body: Vec<u8>,
    /// Bytes of the current body still to come (`None`: reading a header).
    body_left: Option<usize>,
}

#[derive(Debug)]
enum Proto {
    Mysql {
        /// The next packet continues a packet of the maximum length.
        continuation: bool,
    },
    Pg {
        /// Past the start-up message: messages have a type byte.
        typed: bool,
        /// Names of the prepared statements parsed from `COMMIT`.
        commit_statements: HashSet<Vec<u8>>,
        /// Names of the portals bound to one of those.
        commit_portals: HashSet<Vec<u8>>,
    },
    /// Encrypted or not understood: nothing more is looked at.
    Opaque,
}

impl CommitDetector {
    /// A detector for a new connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follows the next bytes of the stream. If a `COMMIT` message ends in
    /// `chunk`, returns where in `chunk` that message begins (0 if it began
    /// in an earlier chunk), for the first such message.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<usize> {
        if self.proto.is_some() {
            return self.frame(chunk);
        }
        let missing = 8usize.saturating_sub(self.first.len()).min(chunk.len());
        self.first.extend_from_slice(&chunk[..missing]);
        if self.first.len() < 8 {
            return None;
        }
        self.proto = Some(detect(&self.first));
        let first = std::mem::take(&mut self.first);
        let earlier = first.len() - missing;
        // The bytes of earlier chunks, then the whole of this one.
        let found_earlier = self.frame(&first[..earlier]).map(|_| 0);
        found_earlier.or(self.frame(chunk))
    }

    /// Splits `chunk` into messages; see [`feed`](Self::feed).
    fn frame(&mut self, mut chunk: &[u8]) -> Option<usize> {
        let mut found = None;
        let mut pos = 0;
        // Where the current message begins in `chunk` (0: in an earlier one).
        let mut start = 0;
        while !chunk.is_empty() && !matches!(self.proto, Some(Proto::Opaque) | None) {
            if self.header.is_empty() && self.body_left.is_none() {
                start = pos;
            }
            let used = match self.body_left {
                None => {
                    let want = self.header_len() - self.header.len();
                    let n = want.min(chunk.len());
                    self.header.extend_from_slice(&chunk[..n]);
                    if self.header.len() == self.header_len() {
                        self.body_left = self.body_len();
                        if self.body_left.is_none() {
                            self.proto = Some(Proto::Opaque);
                        }
                    }
                    n
                }
                Some(left) => {
                    let n = left.min(chunk.len());
                    let keep = KEEP.saturating_sub(self.body.len()).min(n);
                    self.body.extend_from_slice(&chunk[..keep]);
                    self.body_left = Some(left - n);
                    n
                }
            };
            chunk = &chunk[used..];
            pos += used;
            if self.body_left == Some(0) {
                let is_commit = self.message_done();
                if is_commit && found.is_none() {
                    found = Some(start);
                }
            }
        }
        found
    }

    fn header_len(&self) -> usize {
        match &self.proto {
            Some(Proto::Pg { typed: true, .. }) => 5,
            _ => 4,
        }
    }

    /// The body length from a complete header; `None` if the header makes
    /// no sense for the protocol.
    fn body_len(&self) -> Option<usize> {
        let h = &self.header;
        match &self.proto {
            Some(Proto::Mysql { .. }) => {
                Some(usize::from(h[0]) | usize::from(h[1]) << 8 | usize::from(h[2]) << 16)
            }
            Some(Proto::Pg { typed, .. }) => {
                let at = usize::from(*typed);
                let len = u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]) as usize;
                let min = if *typed { 4 } else { 8 };
                (min..=1 << 30).contains(&len).then(|| len - 4)
            }
            _ => None,
        }
    }

    /// Handles a complete message; whether it is a `COMMIT`.
    fn message_done(&mut self) -> bool {
        let header = std::mem::take(&mut self.header);
        let body = std::mem::take(&mut self.body);
        self.body_left = None;
        let mut opaque = false;
        let is_commit = match &mut self.proto {
            Some(Proto::Mysql { continuation }) => {
                let full = header[..3] == [0xff, 0xff, 0xff];
                let command = header[3] == 0 && !*continuation;
                *continuation = full;
                command && body.first() == Some(&0x03) && is_commit_sql(&body[1..])
            }
            Some(Proto::Pg { typed, .. }) if !*typed => {
                let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
                if code == PG_STARTUP {
                    *typed = true;
                } else {
                    opaque = !PG_REQUESTS.contains(&code);
                }
                false
            }
            Some(Proto::Pg {
                commit_statements,
                commit_portals,
                ..
            }) => pg_message(header[0], &body, commit_statements, commit_portals),
            _ => false,
        };
        if opaque {
            self.proto = Some(Proto::Opaque);
        }
        is_commit
    }
}

/// Which protocol a stream that starts with `first` (8 bytes) speaks.
fn detect(first: &[u8]) -> Proto {
    let len = u32::from_be_bytes([first[0], first[1], first[2], first[3]]);
    let code = u32::from_be_bytes([first[4], first[5], first[6], first[7]]);
    if (8..=10_000).contains(&len) && (code == PG_STARTUP || PG_REQUESTS.contains(&code)) {
        Proto::Pg {
            typed: false,
            commit_statements: HashSet::new(),
            commit_portals: HashSet::new(),
        }
    } else {
        Proto::Mysql {
            continuation: false,
        }
    }
}

/// A typed PostgreSQL message from the client; whether it makes the server
/// commit.
fn pg_message(
    kind: u8,
    body: &[u8],
    commit_statements: &mut HashSet<Vec<u8>>,
    commit_portals: &mut HashSet<Vec<u8>>,
) -> bool {
    let mut strings = body.split(|b| *b == 0);
    let mut next = || strings.next().unwrap_or_default().to_vec();
    match kind {
        b'Q' => is_commit_sql(&next()),
        b'P' => {
            let name = next();
            // A statement cut short by `KEEP` has no NUL: not a `COMMIT`.
            let sql_complete = body.len() < KEEP;
            if sql_complete && is_commit_sql(&next()) {
                commit_statements.insert(name);
            } else {
                commit_statements.remove(&name);
            }
            false
        }
        b'B' => {
            let (portal, statement) = (next(), next());
            if commit_statements.contains(&statement) {
                commit_portals.insert(portal);
            } else {
                commit_portals.remove(&portal);
            }
            false
        }
        b'E' => commit_portals.contains(&next()),
        b'C' => {
            let what = body.first().copied();
            let name = body.get(1..).unwrap_or_default();
            let name = name.split(|b| *b == 0).next().unwrap_or_default();
            match what {
                Some(b'S') => commit_statements.remove(name),
                Some(b'P') => commit_portals.remove(name),
                _ => false,
            };
            false
        }
        _ => false,
    }
}

/// Whether `sql` is a `COMMIT` (or PostgreSQL's `END`): that word first, any
/// case, after blanks, followed by nothing, blanks, `;` or more words
/// (`COMMIT WORK`, `END TRANSACTION`).
pub fn is_commit_sql(sql: &[u8]) -> bool {
    let sql = sql.trim_ascii_start();
    let word_end = sql
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(sql.len());
    let (word, rest) = sql.split_at(word_end);
    let word_ok = word.eq_ignore_ascii_case(b"COMMIT") || word.eq_ignore_ascii_case(b"END");
    word_ok
        && rest
            .first()
            .is_none_or(|c| c.is_ascii_whitespace() || *c == b';')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mysql_packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut p = vec![len as u8, (len >> 8) as u8, (len >> 16) as u8, seq];
        p.extend_from_slice(payload);
        p
    }

    fn mysql_query(sql: &str) -> Vec<u8> {
        let mut payload = vec![0x03];
        payload.extend_from_slice(sql.as_bytes());
        mysql_packet(0, &payload)
    }

    /// A MySQL handshake response (sequence 1), as a client sends first.
    fn mysql_login() -> Vec<u8> {
        mysql_packet(1, &[0x0d, 0xa2, 0x0a, 0x00, 0, 0, 0, 1, 33, 0, 0, 0, b'r'])
    }

    fn pg_startup() -> Vec<u8> {
        let mut body = PG_STARTUP.to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0postgres\0\0");
        let mut m = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        m
    }

    fn pg_ssl_request() -> Vec<u8> {
        let mut m = 8u32.to_be_bytes().to_vec();
        m.extend_from_slice(&PG_REQUESTS[0].to_be_bytes());
        m
    }

    fn pg(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
        let body: Vec<u8> = parts.concat();
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        m.extend_from_slice(&body);
        m
    }

    fn feed_all(d: &mut CommitDetector, chunks: &[Vec<u8>]) -> Vec<Option<usize>> {
        chunks.iter().map(|c| d.feed(c)).collect()
    }

    #[test]
    fn commit_words() {
        for yes in [
            "COMMIT",
            "commit",
            " Commit;",
            "COMMIT WORK",
            "END",
            "end transaction",
        ] {
            assert!(is_commit_sql(yes.as_bytes()), "{yes}");
        }
        for no in [
            "COMMITTED",
            "SELECT 1",
            "ENDING",
            "",
            "ROLLBACK",
            "-- COMMIT",
        ] {
            assert!(!is_commit_sql(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn mysql_commit_found_at_its_offset() {
        let mut d = CommitDetector::new();
        assert_eq!(d.feed(&mysql_login()), None);
        assert_eq!(d.feed(&mysql_query("INSERT INTO t VALUES (1)")), None);
        let mut two = mysql_query("SELECT 1");
        let at = two.len();
        two.extend(mysql_query("COMMIT"));
        assert_eq!(d.feed(&two), Some(at));
    }

    #[test]
    fn mysql_commit_split_across_reads() {
        let mut d = CommitDetector::new();
        d.feed(&mysql_login());
        let q = mysql_query("COMMIT");
        let found = feed_all(
            &mut d,
            &[q[..2].to_vec(), q[2..7].to_vec(), q[7..].to_vec()],
        );
        assert_eq!(found, vec![None, None, Some(0)]);
    }

    #[test]
    fn mysql_commit_text_outside_a_command_is_not_a_commit() {
        let mut d = CommitDetector::new();
        d.feed(&mysql_login());
        // The same bytes with sequence number 1 (e.g. LOAD DATA contents).
        let mut payload = vec![0x03];
        payload.extend_from_slice(b"COMMIT");
        assert_eq!(d.feed(&mysql_packet(1, &payload)), None);
        assert_eq!(d.feed(&mysql_query("COMMITTED")), None);
    }

    #[test]
    fn pg_simple_query_commit() {
        let mut d = CommitDetector::new();
        assert_eq!(d.feed(&pg_ssl_request()), None);
        assert_eq!(d.feed(&pg_startup()), None);
        assert_eq!(d.feed(&pg(b'Q', &[b"BEGIN\0"])), None);
        let mut chunk = pg(b'Q', &[b"INSERT INTO t VALUES (1)\0"]);
        let at = chunk.len();
        chunk.extend(pg(b'Q', &[b"commit\0"]));
        assert_eq!(d.feed(&chunk), Some(at));
    }

    #[test]
    fn pg_commit_byte_by_byte() {
        let mut d = CommitDetector::new();
        let mut stream = pg_startup();
        stream.extend(pg(b'Q', &[b"COMMIT\0"]));
        let found: Vec<usize> = stream
            .iter()
            .enumerate()
            .filter_map(|(i, b)| d.feed(&[*b]).map(|_| i))
            .collect();
        assert_eq!(found, vec![stream.len() - 1]);
    }

    #[test]
    fn pg_extended_protocol_commit_is_its_execute() {
        let mut d = CommitDetector::new();
        d.feed(&pg_startup());
        // Prepared once by name, executed later through a named portal.
        let parse = pg(b'P', &[b"s1\0COMMIT\0", &[0, 0]]);
        assert_eq!(d.feed(&parse), None);
        assert_eq!(d.feed(&pg(b'S', &[])), None);
        let bind = pg(b'B', &[b"p1\0s1\0", &[0, 0, 0, 0, 0, 0]]);
        let execute = pg(b'E', &[b"p1\0", &[0, 0, 0, 0]]);
        let mut chunk = bind.clone();
        chunk.extend(&execute);
        chunk.extend(pg(b'S', &[]));
        assert_eq!(d.feed(&chunk), Some(bind.len()));
        // The unnamed statement re-parsed as something else: no COMMIT.
        let mut other = pg(b'P', &[b"\0SELECT 1\0", &[0, 0]]);
        other.extend(pg(b'B', &[b"\0\0", &[0, 0, 0, 0, 0, 0]]));
        other.extend(pg(b'E', &[b"\0", &[0, 0, 0, 0]]));
        assert_eq!(d.feed(&other), None);
        // The unnamed statement and portal as COMMIT, all in one chunk.
        let mut unnamed = pg(b'P', &[b"\0COMMIT\0", &[0, 0]]);
        unnamed.extend(pg(b'B', &[b"\0\0", &[0, 0, 0, 0, 0, 0]]));
        let at = unnamed.len();
        unnamed.extend(pg(b'E', &[b"\0", &[0, 0, 0, 0]]));
        assert_eq!(d.feed(&unnamed), Some(at));
    }

    #[test]
    fn pg_closed_statement_is_forgotten() {
        let mut d = CommitDetector::new();
        d.feed(&pg_startup());
        d.feed(&pg(b'P', &[b"c\0COMMIT\0", &[0, 0]]));
        d.feed(&pg(b'C', &[b"Sc\0"]));
        d.feed(&pg(b'B', &[b"\0c\0", &[0, 0, 0, 0, 0, 0]]));
        assert_eq!(d.feed(&pg(b'E', &[b"\0", &[0, 0, 0, 0]])), None);
    }

    #[test]
    fn encrypted_pg_stream_is_not_looked_at() {
        let mut d = CommitDetector::new();
        d.feed(&pg_ssl_request());
        // A TLS record instead of a start-up message.
        assert_eq!(
            d.feed(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]),
            None
        );
        assert_eq!(d.feed(&pg(b'Q', &[b"COMMIT\0"])), None);
    }

    #[test]
    fn other_protocols_pass_unharmed() {
        let mut d = CommitDetector::new();
        assert_eq!(d.feed(b"hello"), None);
        assert_eq!(d.feed(b" world, COMMIT"), None);
    }
}
