//! Compile-time behaviour of `#[db_txn]`: what must compile, and the error for each misuse.
//! Regenerate the `.stderr` snapshots with `TRYBUILD=overwrite` and review them as a diff.

// rustc names types and lists trait impls differently depending on the
// backends compiled in, so the `.stderr` snapshots are taken with the suite's
// configuration: every backend feature on (`tests/suite`).
#![cfg(all(feature = "sqlite", feature = "mysql", feature = "postgres"))]

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
