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
    // The macro is the same on both transports, and its messages are
    // checked on the default one: with the `amqprs` feature, rustc's list
    // of other types that implement `Deserialize` (`not_serializable`)
    // also names serde_bytes's, a dependency of amqprs.
    if cfg!(not(feature = "amqprs")) {
        cases.compile_fail("tests/ui/fail/*.rs");
    }
    cases.pass("tests/ui/pass/*.rs");
}

/// trybuild builds its cases with rustc alone: this service is here for
/// `cargo clippy --all-targets -- -D warnings`, which checks that lint
/// attributes of clippy's reach the generated items too (the trait's
/// `dead_code` as well: nothing here uses them).
mod clippy_lints {
    #[allow(dead_code)]
    #[rpc_runtime::rpc_service]
    pub(crate) trait Wide {
        #[allow(clippy::too_many_arguments)]
        async fn eight(&self, a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8) -> u8;
    }
}
