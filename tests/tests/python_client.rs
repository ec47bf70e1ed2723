//! A client in another language, written from `docs/PROTOCOL.md` alone
//! (`tests/python/fib_client.py`, with pika and msgpack), against the Rust
//! server.
//!
//! The Python interpreter comes from `RPC_TEST_PYTHON` (set by
//! `scripts/test.sh`, which prepares a virtualenv with pika and msgpack), or
//! is `python3` if that one has both packages. Without either, the test says
//! so and passes: it cannot run, but it must not block the suite on a machine
//! without Python.

use rpc_examples::{FibonacciServer, IterativeFib};
use rpc_runtime::Server;
use rpc_tests::{PATIENCE, TestQueue, amqp_url, connect, within};
use std::path::Path;

fn python() -> Option<String> {
    if let Ok(python) = std::env::var("RPC_TEST_PYTHON") {
        return Some(python);
    }
    let usable = std::process::Command::new("python3")
        .args(["-c", "import pika, msgpack"])
        .output()
        .is_ok_and(|output| output.status.success());
    usable.then(|| "python3".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_written_from_the_protocol_document_works() {
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED: no Python with pika and msgpack (run the suite with scripts/test.sh, or set \
             RPC_TEST_PYTHON)"
        );
        return;
    };
    let queue = TestQueue::new("python");
    let connection = connect("python").await;
    let server = Server::builder()
        .queue(&queue.name)
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await
        .expect("serve");

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/fib_client.py");
    let output = within(
        PATIENCE,
        "the Python client",
        tokio::process::Command::new(&python)
            .arg(&script)
            .args([queue.name.as_str(), "0", "30", "93", "94"])
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
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "fib(0) = 0",
            "fib(30) = 832040",
            "fib(93) = 12200160415121876738",
            "fib(94) failed: {'Overflow': {'n': 94}}",
            "fibb: fault unknown_method",
            "missing queue: returned by the broker",
        ]
    );
    server.shutdown().await;
}
