//! Compile-time behaviour of `#[db_txn]`: what must compile, and the error for each misuse.
//! Regenerate the `.stderr` snapshots with `TRYBUILD=overwrite` and review them as a diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
