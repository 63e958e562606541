//! Compile-time behaviour of `#[db_txn]`: what must compile, and the error for each misuse.
//! Regenerate the `.stderr` snapshots with `TRYBUILD=overwrite cargo test -p db_txn_ui` and
//! review them as a diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("pass/*.rs");
    t.compile_fail("fail/*.rs");
}
