//! [`WriteToken`]: where a write is in the replication stream, to hand to
//! another thread, request or process so that its reads see the write.

use std::fmt;
use std::str::FromStr;

use crate::backend::Position;

/// Where the writes of a thread are in the replication stream: a read on a
/// replica that was given this token waits until the replica shows them
/// (read-your-writes across threads, requests or processes).
///
/// A write on a thread already makes that thread's later reads on the same
/// pool see it. To carry that guarantee elsewhere, take the token after the
/// write with [`Pool::last_write`](crate::Pool::last_write), pass it on (its
/// text form fits in a cookie or a header), and give it to
/// [`Pool::read_after`](crate::Pool::read_after) where the read happens.
///
/// The text form names the server family and the position: `lsn:16/B374D848`
/// (PostgreSQL WAL location), `gtid:0-1-42` (MariaDB GTIDs, one per domain),
/// `gtidset:<uuid>:1-42` (MySQL GTID set). Parsing accepts nothing else.
///
/// ```
/// use db_txn::WriteToken;
/// let token: WriteToken = "gtid:0-1-42".parse()?;
/// assert_eq!(token.to_string(), "gtid:0-1-42");
/// assert!("gtid:0-1-42'; DROP TABLE users".parse::<WriteToken>().is_err());
/// # Ok::<(), db_txn::ParseTokenError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteToken {
    pub(crate) position: Position,
}

impl fmt::Display for WriteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.position, f)
    }
}

impl FromStr for WriteToken {
    type Err = ParseTokenError;

    fn from_str(text: &str) -> Result<Self, ParseTokenError> {
        text.trim()
            .parse()
            .map(|position| WriteToken { position })
            .map_err(|reason| ParseTokenError { reason })
    }
}

/// A text that is not a [`WriteToken`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseTokenError {
    reason: &'static str,
}

impl fmt::Display for ParseTokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a db_txn write token: {}", self.reason)
    }
}

impl std::error::Error for ParseTokenError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_token_says_why() {
        let err = "lsn:nope".parse::<WriteToken>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a db_txn write token: an LSN is HI/LO in hex"
        );
        assert_eq!(
            " lsn:0/10 ".parse::<WriteToken>().map(|t| t.to_string()),
            Ok("lsn:0/10".to_owned())
        );
    }
}
