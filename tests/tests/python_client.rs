//! Clients in another language against the Rust server: one written from
//! `docs/PROTOCOL.md` alone (`tests/python/fib_client.py`, with pika and
//! msgpack), and the RabbitMQ tutorial's client with its server-named reply
//! queue (`tests/python/tutorial_client.py`).
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

/// Runs `tests/python/SCRIPT QUEUE ARGS...` against a Fibonacci server on a
/// queue of its own; returns its stdout lines, or `None` (the test is
/// skipped) without a usable Python.
async fn run_against_fib_server(script: &str, args: &[&str]) -> Option<Vec<String>> {
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED: no Python with pika and msgpack (run the suite with scripts/test.sh, or set \
             RPC_TEST_PYTHON)"
        );
        return None;
    };
    let queue = TestQueue::new("python");
    let connection = connect("python").await;
    let server = Server::builder()
        .queue(&queue.name)
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await
        .expect("serve");

    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let output = within(
        PATIENCE,
        "the Python client",
        tokio::process::Command::new(&python)
            .arg(&script)
            .arg(&queue.name)
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
    server.shutdown().await;
    Some(stdout.lines().map(str::to_owned).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_written_from_the_protocol_document_works() {
    let Some(lines) = run_against_fib_server("fib_client.py", &["0", "30", "93", "94"]).await
    else {
        return;
    };
    assert_eq!(
        lines,
        [
            "fib(0) = 0",
            "fib(30) = 832040",
            "fib(93) = 12200160415121876738",
            "fib(94) failed: {'Overflow': {'n': 94}}",
            "fibb: fault unknown_method",
            "missing queue: returned by the broker",
        ]
    );
}

/// The RabbitMQ tutorial's client declares its reply queue server-named
/// (`amq.gen-*`); servers reply to such queues by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tutorial_client_with_a_server_named_reply_queue_gets_its_replies() {
    let Some(lines) = run_against_fib_server("tutorial_client.py", &["30", "94"]).await else {
        return;
    };
    assert_eq!(
        lines,
        [
            "reply queue: amq.gen-*",
            "fib(30) = 832040",
            "fib(94) failed: err {'Overflow': {'n': 94}}",
        ]
    );
}
