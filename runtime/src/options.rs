//! What a `#[db_txn]` call asks of its transaction.

use std::time::Duration;

/// Transaction isolation level, `#[db_txn(isolation = ...)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Isolation {
    /// `READ COMMITTED`.
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`.
    Serializable,
}

impl Isolation {
    /// The SQL spelling, e.g. `"REPEATABLE READ"`.
    pub fn sql(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "READ COMMITTED",
            Isolation::RepeatableRead => "REPEATABLE READ",
            Isolation::Serializable => "SERIALIZABLE",
        }
    }
}

/// The options of one annotated function, built by the macro from its
/// attribute. Not a stable API: construct it only through `#[db_txn]`.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub(crate) name: &'static str,
    pub(crate) retry: u32,
    pub(crate) retry_conflicts: u32,
    pub(crate) isolation: Option<Isolation>,
    pub(crate) read_only: bool,
    pub(crate) requires_new: bool,
    pub(crate) timeout: Option<Duration>,
    /// `resolve_commit = ...`; `None`: the pool's default.
    pub(crate) resolve_commit: Option<bool>,
}

impl Options {
    /// Defaults: one retry on a lost connection, none on conflicts.
    pub const fn new(name: &'static str) -> Self {
        Options {
            name,
            retry: 1,
            retry_conflicts: 0,
            isolation: None,
            read_only: false,
            requires_new: false,
            timeout: None,
            resolve_commit: None,
        }
    }
    /// `retry = n`
    pub const fn retry(mut self, n: u32) -> Self {
        self.retry = n;
        self
    }
    /// `retry_conflicts = n`
    pub const fn retry_conflicts(mut self, n: u32) -> Self {
        self.retry_conflicts = n;
        self
    }
    /// `isolation = ...`
    pub const fn isolation(mut self, level: Isolation) -> Self {
        self.isolation = Some(level);
        self
    }
    /// `read_only`
    pub const fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }
    /// `requires_new`
    pub const fn requires_new(mut self) -> Self {
        self.requires_new = true;
        self
    }
    /// `timeout = "..."`
    pub const fn timeout_ms(mut self, ms: u64) -> Self {
        self.timeout = Some(Duration::from_millis(ms));
        self
    }
    /// `resolve_commit = on`
    pub const fn resolve_commit(mut self, on: bool) -> Self {
        self.resolve_commit = Some(on);
        self
    }
    /// The annotated function's path, for errors and logs.
    pub fn name(&self) -> &'static str {
        self.name
    }
}
