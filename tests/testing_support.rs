//! `db_txn::testing` on the three backends: the retry-safety check passes a
//! retry-safe function and fails, with a message that names the statement,
//! its SQL and what differs, functions whose side effects run twice (an
//! in-memory counter, an id taken from the process); a test transaction
//! rolls back what joined calls wrote; a fresh database per test is created
//! and removed, and a pool installed for one thread serves that thread only.
//!
//! On MariaDB and PostgreSQL the check's losses are real (the socket is shut
//! down before the statement is sent); on SQLite they are simulated.

/// The same tests for one connection type. `$server`: the server URL a
/// `TestDatabase` is created from (`None` for SQLite); `$exists`: how many
/// databases of a name the server has.
macro_rules! backend_tests {
    ($module:ident, $conn:ty, $feature:literal, $server:expr, $exists:expr, $real_loss:expr) => {
        #[cfg(feature = $feature)]
        mod $module {
            use std::cell::Cell;

            use db_txn::db_txn;
            use db_txn::testing::{
                install_for_thread, test_transaction, RetryCheck, RetryCheckError, TestDatabase,
            };
            use diesel::connection::SimpleConnection;
            use diesel::prelude::*;

            type Conn = $conn;

            diesel::table! {
                accounts (id) {
                    id -> BigInt,
                    balance -> BigInt,
                }
            }

            diesel::table! {
                receipts (id) {
                    id -> BigInt,
                    account -> BigInt,
                    amount -> BigInt,
                }
            }

            const SCHEMA: &str = "DROP TABLE IF EXISTS accounts;
                 DROP TABLE IF EXISTS receipts;
                 CREATE TABLE accounts (id BIGINT PRIMARY KEY, balance BIGINT NOT NULL);
                 CREATE TABLE receipts (id BIGINT PRIMARY KEY, account BIGINT NOT NULL,
                                        amount BIGINT NOT NULL);
                 INSERT INTO accounts (id, balance) VALUES (1, 100), (2, 0)";

            fn database() -> TestDatabase<Conn> {
                let server: Option<String> = $server;
                let mut builder = TestDatabase::<Conn>::builder()
                    .setup(|conn: &mut Conn| conn.batch_execute(SCHEMA));
                if let Some(url) = server {
                    builder = builder.server_url(url);
                }
                builder
                    .create()
                    .unwrap_or_else(|e| panic!("test database: {e}"))
            }

            fn reset(conn: &mut Conn) -> QueryResult<()> {
                NEXT_RECEIPT.set(0);
                CALLS.set(0);
                conn.batch_execute(SCHEMA)
            }

            type State = (Vec<(i64, i64)>, Vec<(i64, i64, i64)>);

            fn state(conn: &mut Conn) -> QueryResult<State> {
                Ok((
                    accounts::table.order(accounts::id).load(conn)?,
                    receipts::table.order(receipts::id).load(conn)?,
                ))
            }

            fn balance(conn: &mut Conn, id: i64) -> QueryResult<i64> {
                accounts::table
                    .find(id)
                    .select(accounts::balance)
                    .first(conn)
            }

            fn add(conn: &mut Conn, id: i64, amount: i64) -> QueryResult<usize> {
                diesel::update(accounts::table.find(id))
                    .set(accounts::balance.eq(accounts::balance + amount))
                    .execute(conn)
            }

            /// Retry-safe: everything it does is in the transaction, and its
            /// receipt id comes from the caller.
            #[db_txn]
            fn transfer(
                conn: &mut Conn,
                receipt: i64,
                from: i64,
                to: i64,
                n: i64,
            ) -> QueryResult<i64> {
                add(conn, from, -n)?;
                add(conn, to, n)?;
                diesel::insert_into(receipts::table)
                    .values((
                        receipts::id.eq(receipt),
                        receipts::account.eq(from),
                        receipts::amount.eq(n),
                    ))
                    .execute(conn)?;
                balance(conn, from)
            }

            // Per thread: the tests run in parallel, and each check runs its
            // calls on the test's thread.
            thread_local! {
                static CALLS: Cell<i64> = const { Cell::new(0) };
                static NEXT_RECEIPT: Cell<i64> = const { Cell::new(0) };
            }

            /// Not retry-safe: counts its calls in memory, in the body.
            #[db_txn]
            fn counted_deposit(conn: &mut Conn, id: i64, n: i64) -> QueryResult<i64> {
                let call = CALLS.get() + 1;
                CALLS.set(call);
                add(conn, id, n)?;
                balance(conn, id)?;
                Ok(call)
            }

            /// Not retry-safe: takes the receipt's id from the process, in
            /// the body: a second run stores another id.
            #[db_txn]
            fn deposit_with_receipt(conn: &mut Conn, id: i64, n: i64) -> QueryResult<()> {
                add(conn, id, n)?;
                let receipt = NEXT_RECEIPT.get() + 1;
                NEXT_RECEIPT.set(receipt);
                diesel::insert_into(receipts::table)
                    .values((
                        receipts::id.eq(receipt),
                        receipts::account.eq(id),
                        receipts::amount.eq(n),
                    ))
                    .execute(conn)?;
                Ok(())
            }

            #[db_txn(requires_new)]
            fn audit(conn: &mut Conn, id: i64) -> QueryResult<usize> {
                diesel::insert_into(receipts::table)
                    .values((
                        receipts::id.eq(id),
                        receipts::account.eq(0),
                        receipts::amount.eq(0),
                    ))
                    .execute(conn)
            }

            #[test]
            fn a_retry_safe_function_passes_the_check() {
                let db = database();
                let _pool = install_for_thread(db.pool().clone());
                let report = RetryCheck::new(db.pool())
                    .setup(reset)
                    .snapshot(state)
                    .run(|| transfer(7, 1, 2, 30).map_err(|e| e.to_string()))
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(report.statements.len(), 4, "{report:#?}");
                assert!(report.statements[0].contains("UPDATE"), "{report:#?}");
                assert!(report.statements[2].contains("INSERT"), "{report:#?}");
                assert_eq!(report.runs, 2 + 4 + 1);
                assert_eq!(report.simulated, !$real_loss, "{report:#?}");
                let s = db.pool().stats();
                assert_eq!(s.retries, 4, "one retry per lost statement: {s:?}");
                assert_eq!(s.disconnects, 4, "{s:?}");
                // The check left the state of its last run: one transfer.
                let mut conn = db.pool().get().expect("conn");
                assert_eq!(
                    state(&mut conn).expect("state"),
                    (vec![(1, 70), (2, 30)], vec![(7, 1, 30)])
                );
            }

            #[test]
            fn an_in_memory_counter_fails_the_check_with_the_statement_and_the_values() {
                let db = database();
                let _pool = install_for_thread(db.pool().clone());
                let err = RetryCheck::new(db.pool())
                    .setup(reset)
                    .snapshot(state)
                    .run(|| counted_deposit(1, 5).map_err(|e| e.to_string()))
                    .expect_err("a counter bumped in the body runs twice");
                let message = err.to_string();
                eprintln!("{message}");
                let RetryCheckError::NotRetrySafe(found) = err else {
                    panic!("not NotRetrySafe: {message}");
                };
                assert_eq!((found.statement, found.statements), (1, 2), "{message}");
                assert!(found.sql.contains("UPDATE"), "{message}");
                assert!(found.sql.contains("accounts"), "{message}");
                let value = found.value.as_ref().expect("the value differs");
                assert_eq!(
                    (value.clean.as_str(), value.other.as_str()),
                    ("Ok(1)", "Ok(2)")
                );
                assert!(found.state.is_none(), "the data is the same: {message}");
                assert_eq!(found.simulated, !$real_loss);
                assert!(message.contains("statement 1 of 2"), "{message}");
                assert!(message.contains("UPDATE"), "{message}");
                assert!(message.contains("returned:        Ok(2)"), "{message}");
                assert!(message.contains("clean run:       Ok(1)"), "{message}");
            }

            #[test]
            fn an_id_taken_in_the_body_fails_the_check_with_the_states() {
                let db = database();
                let _pool = install_for_thread(db.pool().clone());
                let err = RetryCheck::new(db.pool())
                    .setup(reset)
                    .snapshot(state)
                    .run(|| deposit_with_receipt(2, 5).map_err(|e| e.to_string()))
                    .expect_err("the second run stores another receipt id");
                let message = err.to_string();
                eprintln!("{message}");
                let RetryCheckError::NotRetrySafe(found) = err else {
                    panic!("not NotRetrySafe: {message}");
                };
                // A loss at the UPDATE: the id was not taken yet when a real
                // loss stops the body there; the simulated one lets it run on.
                let expected = if $real_loss { 2 } else { 1 };
                assert_eq!(found.statement, expected, "{message}");
                assert_eq!(found.statements, 2, "{message}");
                let state = found.state.as_ref().expect("the state differs");
                assert!(state.clean.contains("[(1, 2, 5)]"), "{message}");
                assert!(state.other.contains("[(2, 2, 5)]"), "{message}");
                assert!(message.contains("committed state: "), "{message}");
                assert!(
                    message.contains(&format!("statement {expected} of 2")),
                    "{message}"
                );
            }

            #[test]
            fn clean_runs_that_differ_are_reported_as_such() {
                let db = database();
                let _pool = install_for_thread(db.pool().clone());
                // No set-up: the second clean run starts where the first ended.
                let err = RetryCheck::new(db.pool())
                    .snapshot(state)
                    .run(|| counted_deposit(1, 5).map_err(|e| e.to_string()))
                    .expect_err("no set-up");
                assert!(
                    matches!(err, RetryCheckError::NotRepeatable { .. }),
                    "{err}"
                );
                assert!(err.to_string().contains("two clean runs"), "{err}");
                // A call on another pool sends nothing on this one.
                let other = database();
                let err = RetryCheck::new(other.pool())
                    .run(|| counted_deposit(1, 5).map_err(|e| e.to_string()))
                    .expect_err("another pool");
                assert!(matches!(err, RetryCheckError::NoStatements { .. }), "{err}");
            }

            #[test]
            fn a_test_transaction_rolls_back_what_joined_calls_wrote() {
                let db = database();
                let _pool = install_for_thread(db.pool().clone());
                let balance_inside = test_transaction(db.pool(), || {
                    transfer(1, 1, 2, 10)?;
                    transfer(2, 1, 2, 10)?;
                    // Plain diesel on the same connection.
                    db_txn::with_connection(|conn: &mut Conn| balance(conn, 2))?
                })
                .expect("test transaction");
                assert_eq!(balance_inside, 20);
                let mut conn = db.pool().get().expect("conn");
                assert_eq!(
                    state(&mut conn).expect("state"),
                    (vec![(1, 100), (2, 0)], vec![]),
                    "rolled back"
                );
                drop(conn);
                // A retry check cannot run inside: joined calls never retry.
                let err = test_transaction(db.pool(), || {
                    Ok::<_, db_txn::Error>(
                        RetryCheck::new(db.pool())
                            .run(|| transfer(3, 1, 2, 1).map_err(|e| e.to_string())),
                    )
                })
                .expect("test transaction")
                .expect_err("inside a session");
                assert!(matches!(err, RetryCheckError::InsideSession), "{err}");
            }

            #[test]
            fn requires_new_in_a_test_transaction_commits_for_real() {
                let db = database();
                let _pool = install_for_thread(db.pool().clone());
                let inner = test_transaction(db.pool(), || {
                    transfer(1, 1, 2, 10)?;
                    Ok::<_, db_txn::Error>(audit(99))
                })
                .expect("test transaction");
                let mut conn = db.pool().get().expect("conn");
                let receipts: Vec<i64> = receipts::table
                    .select(receipts::id)
                    .order(receipts::id)
                    .load(&mut *conn)
                    .expect("receipts");
                if $real_loss {
                    // A server: its own connection and transaction, committed.
                    assert_eq!(inner.expect("requires_new"), 1);
                    assert_eq!(receipts, vec![99], "only the requires_new row stays");
                } else {
                    // SQLite: the test transaction holds the write lock.
                    let err = inner.expect_err("waits for its caller's lock");
                    assert!(
                        matches!(err, diesel::result::Error::DatabaseError(..)),
                        "{err}"
                    );
                    assert!(err.to_string().contains("one writer at a time"), "{err}");
                    assert!(receipts.is_empty());
                }
            }

            #[test]
            fn each_test_database_is_its_own_and_is_removed() {
                let (a, b) = (database(), database());
                assert_ne!(a.name(), b.name());
                assert_ne!(a.url(), b.url());
                let exists: &dyn Fn(&str) -> i64 = &$exists;
                assert_eq!(exists(a.name()), 1);
                // Tests on threads of their own, each with its database.
                std::thread::scope(|s| {
                    for (db, receipt) in [(&a, 1), (&b, 2)] {
                        let pool = db.pool().clone();
                        s.spawn(move || {
                            let _pool = install_for_thread(pool);
                            transfer(receipt, 1, 2, receipt).expect("transfer");
                        });
                    }
                });
                for (db, receipt) in [(&a, 1), (&b, 2)] {
                    let mut conn = db.pool().get().expect("conn");
                    assert_eq!(
                        state(&mut conn).expect("state").1,
                        vec![(receipt, 1, receipt)],
                        "{}",
                        db.name()
                    );
                }
                assert!(
                    db_txn::installed::<Conn>().is_none(),
                    "nothing installed for the process"
                );
                let name = a.name().to_owned();
                a.remove().expect("removed");
                assert_eq!(exists(&name), 0, "{name} is gone");
                let name = b.name().to_owned();
                drop(b);
                assert_eq!(exists(&name), 0, "{name} is gone");
            }
        }
    };
}

backend_tests!(
    sqlite,
    diesel::SqliteConnection,
    "sqlite",
    None,
    |path: &str| i64::from(std::path::Path::new(path).exists()),
    false
);

backend_tests!(
    mariadb,
    diesel::MysqlConnection,
    "mysql",
    Some(db_txn_tests::MariaDb::shared().url()),
    |name: &str| db_txn_tests::MariaDb::shared().query_i64(&format!(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{name}'"
    )),
    true
);

backend_tests!(
    postgres,
    diesel::PgConnection,
    "postgres",
    Some(db_txn_tests::Postgres::shared().url()),
    |name: &str| db_txn_tests::Postgres::shared().query_i64(&format!(
        "SELECT COUNT(*) FROM pg_database WHERE datname = '{name}'"
    )),
    true
);
