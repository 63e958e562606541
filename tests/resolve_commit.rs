//! `resolve_commit` beyond the fault matrix: where its settings come from,
//! the MariaDB marker table (the documented migration, the clean-up), and
//! PostgreSQL transactions that wrote nothing.
#![cfg(any(feature = "mysql", feature = "postgres"))]

mod fault;

use std::net::SocketAddr;

use db_txn::{db_txn, Pool, TxnConnection};
use db_txn_tests::ProxyProcess;
use fault::ledger::{transfer, Ledger, LedgerError};
use fault::TestServer;

/// Markers deleted together (`pool/resolution.rs`).
const FORGET_BATCH: i64 = 256;

/// The same transfer as the ledger's, with the option off for this function.
#[db_txn(pool = pool, resolve_commit = false)]
fn transfer_unresolved<C: TxnConnection>(
    conn: &mut C,
    pool: &Pool<C>,
    op: &str,
) -> Result<(), LedgerError> {
    conn.batch_execute(&format!(
        "INSERT INTO ops (op_id, src, dst, amount) VALUES ('{op}', 0, 1, 7); \
         UPDATE accounts SET balance = balance - 7 WHERE id = 0; \
         UPDATE accounts SET balance = balance + 7 WHERE id = 1"
    ))?;
    Ok(())
}

/// A ledger whose pool goes through a proxy process, with `resolve_commit`
/// as the pool default set to `on`.
fn ledger<'s, S: TestServer>(server: &'s S, name: &str, on: bool) -> (ProxyProcess, Ledger<'s, S>) {
    let proxy =
        ProxyProcess::start(SocketAddr::from(([127, 0, 0, 1], server.port()))).expect("proxy");
    let port = proxy.port();
    let l = Ledger::new(server, name, |url| {
        let database = url.rsplit('/').next().expect("database").to_owned();
        Pool::builder(server.url_via_port(&database, port))
            .max_size(2)
            .resolve_commit(on)
            .build()
            .expect("pool")
    });
    (proxy, l)
}

/// A function's `resolve_commit = false` wins over its pool's default, and
/// its pool's default stands for the others.
fn a_function_turns_it_off<S: TestServer>(server: &S) {
    let (proxy, mut l) = ledger(server, "fn_off", true);
    l.transfer();
    proxy.cut_after_commit();
    let r = transfer_unresolved(&l.pool, "unresolved-1");
    assert!(
        matches!(
            r,
            Err(LedgerError::Txn(db_txn::Error::CommitUnknown { .. }))
        ),
        "{r:?}"
    );
    proxy.cut_after_commit();
    l.transfer();
    let s = l.pool.stats();
    assert_eq!(
        (s.commit_unknowns, s.lost_commits_committed),
        (1, 1),
        "{s:?}"
    );
    l.assert_consistent(1);
}

#[cfg(feature = "mysql")]
mod mariadb {
    use super::*;
    use db_txn_tests::MariaDb;

    #[test]
    fn a_function_turns_it_off() {
        super::a_function_turns_it_off(MariaDb::shared());
    }

    /// Markers of committed transactions are deleted 256 at a time: after
    /// 700 transactions the table holds fewer than 256.
    #[test]
    fn markers_do_not_pile_up() {
        let server = MariaDb::shared();
        let (_proxy, mut l) = ledger(server, "markers", true);
        for _ in 0..700 {
            l.transfer();
        }
        let left = l.count("SELECT COUNT(*) FROM db_txn_commit_markers");
        assert!((1..FORGET_BATCH).contains(&left), "{left} markers left");
        l.assert_consistent(0);
    }

    /// An application user without the right to create tables: with the
    /// table made by the documented migration (OPTIONS.md), resolution
    /// works; without it, the pool warns and a lost COMMIT is unknown, while
    /// every other call works as usual.
    #[test]
    fn the_migration_for_a_user_without_ddl() {
        let server = MariaDb::shared();
        let docs = include_str!("../runtime/OPTIONS.md");
        let migration = docs
            .lines()
            .find(|l| l.starts_with("CREATE TABLE IF NOT EXISTS db_txn_commit_markers"))
            .expect("the migration in OPTIONS.md");
        for (name, migrated) in [("ddl_migrated", true), ("ddl_missing", false)] {
            let url = server.create_database(name);
            let database = url.rsplit('/').next().expect("database").to_owned();
            server.exec(&format!(
                "CREATE USER IF NOT EXISTS 'app'@'%'; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON {database}.* TO 'app'@'%'; \
                 CREATE TABLE {database}.ops (op_id VARCHAR(64) PRIMARY KEY, src INT NOT NULL, \
                 dst INT NOT NULL, amount BIGINT NOT NULL); \
                 CREATE TABLE {database}.accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL); \
                 INSERT INTO {database}.accounts VALUES (0, 1000), (1, 1000)"
            ));
            if migrated {
                server.exec_in(&database, migration);
            }
            let proxy = ProxyProcess::start(SocketAddr::from(([127, 0, 0, 1], server.port())))
                .expect("proxy");
            let pool = Pool::<diesel::MysqlConnection>::builder(format!(
                "mysql://app@127.0.0.1:{}/{database}",
                proxy.port()
            ))
            .resolve_commit(true)
            .build()
            .expect("pool as app");
            transfer(&pool, "first", 0, 1, 7, &|| {}).expect("an ordinary call works");
            proxy.cut_after_commit();
            let r = transfer(&pool, "cut", 0, 1, 7, &|| {});
            let s = pool.stats();
            if migrated {
                assert!(r.is_ok(), "{r:?}");
                assert_eq!(s.lost_commits_committed, 1, "{s:?}");
            } else {
                assert!(
                    matches!(
                        r,
                        Err(LedgerError::Txn(db_txn::Error::CommitUnknown { .. }))
                    ),
                    "{r:?}"
                );
                assert_eq!(s.commit_unknowns, 1, "{s:?}");
            }
            let ops = server.query_i64(&format!("SELECT COUNT(*) FROM {database}.ops"));
            assert_eq!(ops, 2, "both committed once");
        }
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use db_txn_tests::Postgres;

    #[test]
    fn a_function_turns_it_off() {
        super::a_function_turns_it_off(Postgres::shared());
    }

    /// A transaction that wrote nothing has no transaction id: when its
    /// COMMIT is lost, nothing is lost, and the call returns its result
    /// without asking.
    #[test]
    fn nothing_written_keeps_its_result() {
        let server = Postgres::shared();
        let (proxy, l) = ledger(server, "nothing_written", true);
        proxy.cut_after_commit();
        let n = count_ops(&l.pool).expect("the result is kept");
        assert_eq!(n, 0);
        assert!(!proxy.commit_fault_pending(), "the COMMIT was cut");
        let s = l.pool.stats();
        assert_eq!(
            (
                s.commit_unknowns,
                s.lost_commits_committed,
                s.lost_commits_aborted,
                s.retries
            ),
            (0, 0, 0, 0),
            "{s:?}"
        );
        assert!(s.disconnects >= 1, "{s:?}");
    }

    #[db_txn(pool = pool)]
    fn count_ops(
        conn: &mut diesel::PgConnection,
        pool: &Pool<diesel::PgConnection>,
    ) -> Result<i64, LedgerError> {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n: N = diesel::sql_query("SELECT COUNT(*) AS n FROM ops").get_result(conn)?;
        Ok(n.n)
    }
}
