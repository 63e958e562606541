//! The database tests are compiled in by the `mysql` and `postgres` features
//! (`tests/suite` turns every feature on). Under CI, a run without them would
//! skip every MariaDB and PostgreSQL test without a word: fail it instead.

#[test]
fn ci_runs_the_database_tests() {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        assert!(
            cfg!(feature = "mysql") && cfg!(feature = "postgres"),
            "CI=true but the mysql/postgres features are off: the database tests would not run; \
             use `bash tests/suite` (cargo test --workspace --all-features)"
        );
    }
}
