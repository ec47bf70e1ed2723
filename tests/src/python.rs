//! Clients in Python (`tests/python/`), run against the servers of the
//! tests: they are written from docs/PROTOCOL.md alone, with pika and
//! msgpack, so that the document stays enough to write a client.
//!
//! The interpreter comes from `RPC_TEST_PYTHON` (set by `scripts/test.sh`,
//! which prepares a virtualenv with pika, msgpack and the OpenTelemetry
//! SDK), or is `python3` if that one has pika and msgpack. Without either,
//! [`run`] says so and returns `None`: the test cannot run, but must not
//! block the suite on a machine without Python.

use crate::{PATIENCE, amqp_url, within};
use std::path::Path;

/// The Python to run the clients with, if there is one.
pub fn python() -> Option<String> {
    if let Ok(python) = std::env::var("RPC_TEST_PYTHON") {
        return Some(python);
    }
    let usable = std::process::Command::new("python3")
        .args(["-c", "import pika, msgpack"])
        .output()
        .is_ok_and(|output| output.status.success());
    usable.then(|| "python3".to_owned())
}

/// Runs `tests/python/SCRIPT ARGS...` with `AMQP_URL` set; returns its
/// stdout lines (it must succeed), or `None` without a usable Python.
pub async fn run(script: &str, args: &[&str]) -> Option<Vec<String>> {
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED: no Python with pika and msgpack (run the suite with scripts/test.sh, or set \
             RPC_TEST_PYTHON)"
        );
        return None;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let output = within(
        PATIENCE,
        "the Python client",
        tokio::process::Command::new(&python)
            .arg(&script)
            .args(args)
            .env("AMQP_URL", amqp_url())
            .output(),
    )
    .await
    .expect("run the Python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout.lines().map(str::to_owned).collect())
}
