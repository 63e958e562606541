//! Test kit of `db_txn`: throwaway database servers, replication, a
//! connection pooler and fault-injecting TCP proxies, shared by the
//! integration tests (`tests/*.rs`) and examples.
//!
//! * [`MariaDb`] (feature `mysql`) and [`Postgres`] (feature `postgres`) run
//!   a private server on a free port of 127.0.0.1 with a temporary data
//!   directory, and can restart, stop, crash, freeze it or kill one of its
//!   connections. `shared()` gives the one server of a test binary, for
//!   tests that isolate themselves with `create_database`; a test that
//!   disrupts its server starts its own (about 0.1–0.3 s once the first
//!   server of the process has initialized the data-directory template).
//! * Replication: [`Postgres::start_standby`] (a streaming hot standby;
//!   promote, fence, pause replay: [`pg_replication`]) and
//!   [`MariaDb::start_primary`] / [`MariaDb::start_replica`] (GTID
//!   replication, lag, read-only, switchover: [`mariadb_replication`]).
//! * [`Pgbouncer`] (feature `postgres`) pools the connections to a kit
//!   PostgreSQL server in transaction mode.
//! * [`ProxyProcess`] is a fault-injecting TCP proxy in a process of its
//!   own (the `db_txn_faultproxy` program), as a proxy, NAT or load
//!   balancer is in a deployment: it cuts connections (FIN or RST),
//!   black-holes them, cuts right after a `COMMIT` reached the server,
//!   drops the `COMMIT` or holds it, and moves new connections to another
//!   server.
//!   [`Proxy`] runs the same relay in the test process, with fewer faults.
//!
//! Every server (and proxy) started by the kit dies with the test process: it is
//! stopped when its handle is dropped, at `exit()` (the servers of
//! `shared()` are never dropped), and by the kernel if the process is killed
//! (see [`process`] and [`cleanup`]). Tests never skip: a missing server
//! binary is an error that names the Debian package to install.
//!
//! The servers' directories are in `/dev/shm` (RAM) unless
//! `$DB_TXN_KIT_DIR` names another place (see [`cleanup::base_dir`]).
//!
//! The other public modules are the machinery, with helpers a test may
//! use too, such as [`ports::free_port`] (a port nobody listens on) or
//! [`process::poll_until`].

#![warn(missing_docs)]

pub mod cleanup;
pub mod error;
pub mod pace;
pub mod ports;
pub mod process;
pub mod proctree;
pub mod proxy;
pub mod proxy_process;

mod faultproxy;

#[cfg(any(feature = "mysql", feature = "postgres"))]
mod admin;
#[cfg(any(feature = "mysql", feature = "postgres"))]
mod server;
#[cfg(any(feature = "mysql", feature = "postgres"))]
mod template;

#[cfg(feature = "mysql")]
pub mod mariadb;
#[cfg(feature = "mysql")]
pub mod mariadb_replication;
#[cfg(feature = "postgres")]
pub mod pg_replication;
#[cfg(feature = "postgres")]
pub mod pgbouncer;
#[cfg(feature = "postgres")]
pub mod postgres;

pub use error::KitError;
#[cfg(feature = "mysql")]
pub use mariadb::MariaDb;
#[cfg(feature = "postgres")]
pub use pg_replication::Lsn;
#[cfg(feature = "postgres")]
pub use pgbouncer::Pgbouncer;
#[cfg(feature = "postgres")]
pub use postgres::Postgres;
pub use proxy::Proxy;
pub use proxy_process::{ProxyProcess, ProxyStats};
