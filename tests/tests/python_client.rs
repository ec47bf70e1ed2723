//! Clients in another language against the Rust server: one written from
//! `docs/PROTOCOL.md` alone (`tests/python/fib_client.py`, with pika and
//! msgpack), the RabbitMQ tutorial's client with its server-named reply
//! queue (`tests/python/tutorial_client.py`), and one that sends trace
//! context, a deadline, metadata and its identity
//! (`tests/python/context_client.py`).
//!
//! Without a Python with pika and msgpack, the tests say so and pass (see
//! `rpc_tests::python`).

use rpc_examples::{FibonacciServer, IterativeFib};
use rpc_runtime::Server;
use rpc_tests::{LabFixture, TestQueue, connect, python};

/// Runs `tests/python/SCRIPT QUEUE ARGS...` against a Fibonacci server on a
/// queue of its own; returns its stdout lines, or `None` (the test is
/// skipped) without a usable Python.
async fn run_against_fib_server(script: &str, args: &[&str]) -> Option<Vec<String>> {
    python::python()?;
    let queue = TestQueue::new("python");
    let connection = connect("python").await;
    let server = Server::builder()
        .queue(&queue.name)
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await
        .expect("serve");
    let mut all = vec![queue.name.as_str()];
    all.extend_from_slice(args);
    let lines = python::run(script, &all).await;
    server.shutdown().await;
    lines
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

/// A client in another language sends trace context, its deadline, call
/// metadata and its identity, as PROTOCOL.md §2 says; the handler sees each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_sends_trace_context_deadline_metadata_and_identity() {
    if python::python().is_none() {
        return;
    }
    let fixture = LabFixture::start("python-context").await;
    let lines = python::run("context_client.py", &[fixture.queue.name.as_str()])
        .await
        .expect("a usable Python");
    let sent_trace = lines[0]
        .strip_prefix("sent trace_id=")
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the client's trace id");
    assert_eq!(
        lines[1..],
        [
            format!("seen trace_id={sent_trace}"),
            "seen user_id=guest".to_owned(),
            "seen tenant=py".to_owned(),
            "seen time_left_ok=yes".to_owned(),
        ]
    );
    fixture.shutdown().await;
}
