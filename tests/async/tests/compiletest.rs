//! Compile-time behaviour of `#[db_txn]` on `async fn`: what must compile
//! (the futures are `Send`), and the error for each misuse. Regenerate the
//! `.stderr` snapshots with `TRYBUILD=overwrite` and review them as a diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("ui/pass/*.rs");
    t.compile_fail("ui/fail/*.rs");
}
