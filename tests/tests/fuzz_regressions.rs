//! Replays, as ordinary tests, every input in `fuzz/regressions/<target>/`:
//! the crashes the fuzzers found (each fixed, and kept so that it stays
//! fixed) and hand-made seeds.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(target);
    let mut inputs = 0;
    for entry in std::fs::read_dir(&dir).expect("the regression directory") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("read the input");
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panics again", path.display());
        inputs += 1;
    }
    assert!(inputs > 0, "no inputs in {}", dir.display());
}

#[test]
fn server_dispatch_regressions() {
    replay("server_dispatch", rpc_tests::fuzzing::server_dispatch);
}

#[test]
fn client_decode_regressions() {
    replay("client_decode", rpc_tests::fuzzing::client_decode);
}
