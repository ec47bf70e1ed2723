//! The compile-time experience of `#[rpc_service]`: misuse is reported
//! clearly, on the offending tokens (`tests/ui/fail/*.stderr`), and correct
//! services compile in any scope (`tests/ui/pass`).
//!
//! After an intended change to a message, refresh the snapshots with
//! `TRYBUILD=overwrite cargo test -p rpc-tests --test macro_ui`.

#[test]
fn macro_ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/fail/*.rs");
    cases.pass("ui/pass/*.rs");
}
