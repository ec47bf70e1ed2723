//! Requests the framework cannot run: each gets the right fault reply, is
//! never requeued, and the server keeps serving.

use rpc_runtime::{FaultKind, RpcError, lapin::BasicProperties};
use rpc_tests::{
    LabControl, TestQueue, connect, lab_client,
    raw::{Raw, decode_fault, next_reply},
    serve_lab,
};

/// Publishes `body` as a foreign client would, and returns the fault it
/// gets back.
async fn fault_for(raw: &Raw, queue: &str, method: Option<&str>, body: &[u8]) -> (String, String) {
    let (reply_queue, mut replies) = raw.reply_queue().await.expect("reply queue");
    let mut properties = BasicProperties::default()
        .with_content_type("application/msgpack".into())
        .with_correlation_id("foreign-1".into())
        .with_reply_to(reply_queue.as_str().into());
    if let Some(method) = method {
        properties = properties.with_type(method.into());
    }
    raw.publish(queue, body, properties).await.expect("publish");
    let (properties, body) = next_reply(&mut replies).await;
    assert_eq!(
        properties.correlation_id().as_ref().map(|id| id.as_str()),
        Some("foreign-1"),
        "the fault reply carries the request's correlation id"
    );
    assert_eq!(
        properties.content_type().as_ref().map(|ct| ct.as_str()),
        Some("application/msgpack")
    );
    let fault = decode_fault(&body);
    (fault.kind, fault.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_requests_that_cannot_run_get_fault_replies() {
    let queue = TestQueue::new("faults");
    let connection = connect("faults").await;
    let control = LabControl::default();
    let server = serve_lab(&connection, &queue, "s1", &control, 8).await;
    let raw = Raw::open().await.expect("raw connection");

    let (kind, message) = fault_for(&raw, &queue.name, Some("no_such_method"), &[0x90]).await;
    assert_eq!(kind, "unknown_method");
    assert!(message.contains("no_such_method"), "{message}");

    let (kind, _) = fault_for(&raw, &queue.name, None, &[0x90]).await;
    assert_eq!(
        kind, "unknown_method",
        "a request without `type` names no method"
    );

    // 0xc1 is never valid MessagePack.
    let (kind, _) = fault_for(&raw, &queue.name, Some("echo"), &[0xc1]).await;
    assert_eq!(kind, "bad_request");

    let (kind, message) = fault_for(&raw, &queue.name, Some("echo"), &[]).await;
    assert_eq!(kind, "bad_request");
    assert!(message.contains("empty"), "{message}");

    // ["a", "b"] for a method of one argument.
    let two = rmp_serde::to_vec(&("a", "b")).expect("encode");
    let (kind, message) = fault_for(&raw, &queue.name, Some("echo"), &two).await;
    assert_eq!(kind, "bad_request");
    assert!(
        message.contains("expected 1 argument(s), got 2"),
        "{message}"
    );

    // [1, "two"] for add(a: i64, b: i64).
    let mistyped = rmp_serde::to_vec(&(1, "two")).expect("encode");
    let (kind, message) = fault_for(&raw, &queue.name, Some("add"), &mistyped).await;
    assert_eq!(kind, "bad_request");
    assert!(message.contains("argument 1 (`b`)"), "{message}");

    // Nothing was requeued into a loop, nothing ran, and the server serves on.
    assert_eq!(raw.message_count(&queue.name).await.expect("count"), 0);
    assert_eq!(control.handled.load(std::sync::atomic::Ordering::SeqCst), 0);
    let (_, lab) = lab_client(&connection, &queue).await;
    assert_eq!(lab.add(1, 2).await.expect("still serving"), 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_gives_a_fault_and_the_server_keeps_serving() {
    let queue = TestQueue::new("panic");
    let connection = connect("panic").await;
    let server = serve_lab(&connection, &queue, "s1", &LabControl::default(), 8).await;
    let (client, lab) = lab_client(&connection, &queue).await;

    for _ in 0..3 {
        match lab.explode("kaboom".into()).await {
            Err(RpcError::Fault { method, fault }) => {
                assert_eq!(method, "explode");
                assert_eq!(fault.kind(), &FaultKind::HandlerPanicked);
            }
            other => panic!("expected a handler_panicked fault, got {other:?}"),
        }
    }
    assert_eq!(lab.echo("alive".into()).await.expect("echo"), "alive");
    assert_eq!(client.pending_calls(), 0);
    let raw = Raw::open().await.expect("raw connection");
    assert_eq!(raw.message_count(&queue.name).await.expect("count"), 0);
    server.shutdown().await;
}
