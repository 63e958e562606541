//! The seeds' experiment, side by side: `SET SESSION wait_timeout = 1`, idle
//! for two seconds, query. Plain diesel + r2d2 (without its ping, as a
//! service that cannot afford one per checkout) hands out the dead
//! connection and fails with "Server has gone away" on every call after a
//! pause; a `#[db_txn]` function succeeds: its pool read the session's
//! `wait_timeout` when the connection opened and retires a connection idle
//! close to it, without a ping (the summary's `recycled`).
//!
//! `cargo run --example gone_away --features mysql` starts a throwaway
//! MariaDB (set `DATABASE_URL=mysql://...` to use your own).

use std::time::Duration;

use db_txn::{db_txn, Pool};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection};
use diesel::sql_types::Text;
use diesel::MysqlConnection;

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = Text)]
    now: String,
}

const QUERY: &str = "SELECT CAST(NOW(6) AS CHAR) AS now";
const SHORT_WAIT: &str = "SET SESSION wait_timeout = 1";

#[db_txn]
fn server_time(conn: &mut MysqlConnection) -> Result<String, db_txn::Error> {
    Ok(diesel::sql_query(QUERY).get_result::<Now>(conn)?.now)
}

#[derive(Debug)]
struct ShortWait;
impl CustomizeConnection<MysqlConnection, diesel::r2d2::Error> for ShortWait {
    fn on_acquire(&self, conn: &mut MysqlConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute(SHORT_WAIT)
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let own_server;
    let url = match std::env::var("DATABASE_URL") {
        Ok(url) => url,
        Err(_) => {
            own_server = db_txn_tests::MariaDb::start()?;
            println!("started a throwaway MariaDB on port {}", own_server.port());
            own_server.url()
        }
    };

    // Plain diesel + r2d2, no ping on checkout.
    let plain = diesel::r2d2::Pool::builder()
        .max_size(1)
        .test_on_check_out(false)
        .connection_customizer(Box::new(ShortWait))
        .build(ConnectionManager::<MysqlConnection>::new(&url))?;

    // db_txn with its defaults; the same session setting on every connection.
    let pool = Pool::<MysqlConnection>::builder(&url)
        .max_size(1)
        .on_connect(|c| c.batch_execute(SHORT_WAIT))
        .build()?;
    db_txn::install(pool.clone());

    println!("{:<8} {:<46} #[db_txn]", "round", "plain diesel + r2d2");
    let (mut plain_failures, mut our_failures) = (0, 0);
    for round in 1..=3 {
        let mut p = plain.get()?;
        let plain_result = match diesel::sql_query(QUERY).get_result::<Now>(&mut *p) {
            Ok(row) => format!("ok {}", row.now),
            Err(e) => {
                plain_failures += 1;
                format!("ERROR {e}")
            }
        };
        drop(p);
        let ours = match server_time() {
            Ok(now) => format!("ok {now}"),
            Err(e) => {
                our_failures += 1;
                format!("ERROR {e}")
            }
        };
        println!("{round:<8} {plain_result:<46} {ours}");
        std::thread::sleep(Duration::from_millis(2000));
    }
    let s = pool.stats();
    // Why #[db_txn] never failed: the pool read `wait_timeout` (1 s, set by
    // `on_connect`) when each connection opened, and retired an idle one
    // before the server dropped it, without a ping: `recycled`.
    println!(
        "db_txn pool: {} connection(s) recycled before the server's wait_timeout, {} dead \
         connection(s) found, {} ping(s), {} opened, {} retries",
        s.recycled, s.disconnects, s.pings, s.opened, s.retries
    );
    println!("plain diesel failed {plain_failures} of 3 calls; #[db_txn] failed {our_failures}");
    if our_failures > 0 {
        return Err("a #[db_txn] call failed".into());
    }
    Ok(())
}
