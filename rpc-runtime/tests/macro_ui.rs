//! The compile-time experience of `#[rpc_service]`: misuse is reported
//! clearly, on the offending tokens (`tests/ui/fail/*.stderr`), and correct
//! services compile in any scope (`tests/ui/pass`). Here, in `rpc-runtime`,
//! rather than in `rpc-tests`: trybuild builds the crate's dependencies
//! afresh, and this crate's are a fraction of the test crate's.
//!
//! After an intended change to a message, refresh the snapshots with
//! `TRYBUILD=overwrite cargo test -p rpc-runtime --test macro_ui`.

#[test]
fn macro_ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
