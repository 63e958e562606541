//! The database tests are compiled in by the `mysql` and `postgres` features
//! (`tests/suite` turns every feature on). Under CI, a run without them would
//! skip every MariaDB and PostgreSQL test without a word: fail it instead.

const DATABASE_TESTS_BUILT: bool = cfg!(all(feature = "mysql", feature = "postgres"));

#[test]
fn ci_runs_the_database_tests() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if ci && !DATABASE_TESTS_BUILT {
        panic!(
            "CI=true but the mysql/postgres features are off: the database tests would not run; \
             use `bash tests/suite` (cargo test --workspace --all-features)"
        );
    }
}
