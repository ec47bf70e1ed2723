//! Requests the framework cannot run: each gets the right fault reply, is
//! never requeued, and the server keeps serving.

use rpc_runtime::{FaultKind, RpcError, lapin::BasicProperties};
use rpc_tests::{
    LabControl, LabFixture, TestQueue, connect, lab_client,
    raw::{Raw, decode_fault, next_reply},
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
    let fixture = LabFixture::start("faults").await;
    let LabFixture {
        queue,
        control,
        lab,
        ..
    } = &fixture;
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
    assert!(message.contains("argument 2 (`b`)"), "{message}");

    // Nothing was requeued into a loop, nothing ran, and the server serves on.
    assert_eq!(raw.message_count(&queue.name).await.expect("count"), 0);
    assert_eq!(control.handled.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(lab.add(1, 2).await.expect("still serving"), 3);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_gives_a_fault_and_the_server_keeps_serving() {
    let fixture = LabFixture::start("panic").await;
    let LabFixture {
        queue, client, lab, ..
    } = &fixture;

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
    fixture.shutdown().await;
}

/// Publishes one raw request with `properties` (a `reply_to` queue of the
/// framework's kind is added) and returns the reply's properties and body.
async fn reply_to_raw(
    raw: &Raw,
    queue: &str,
    properties: BasicProperties,
    body: &[u8],
) -> (BasicProperties, Vec<u8>) {
    let (reply_queue, mut replies) = raw.reply_queue().await.expect("reply queue");
    let properties = properties.with_reply_to(reply_queue.as_str().into());
    raw.publish(queue, body, properties).await.expect("publish");
    next_reply(&mut replies).await
}

fn request(method: &str) -> BasicProperties {
    BasicProperties::default()
        .with_type(method.into())
        .with_correlation_id("hostile-1".into())
        .with_content_type("application/msgpack".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_properties_and_sizes_get_faults_and_never_loop() {
    let queue = TestQueue::new("hostile");
    let connection = connect("hostile").await;
    let control = LabControl::default();
    let server = rpc_runtime::Server::builder()
        .queue(&queue.name)
        .max_request_size(1024)
        .serve(&connection, rpc_tests::lab_server("s1", &control))
        .await
        .expect("serve");
    let raw = Raw::open().await.expect("raw connection");
    let echo = rmp_serde::to_vec(&("hi",)).expect("encode");

    // Over the size limit.
    let big = rmp_serde::to_vec(&("x".repeat(2000),)).expect("encode");
    let (_, body) = reply_to_raw(&raw, &queue.name, request("echo"), &big).await;
    let fault = decode_fault(&body);
    assert_eq!(fault.kind, "request_too_large", "{}", fault.message);

    // A content type that is not MessagePack, or an encoding.
    let json = request("echo").with_content_type("application/json".into());
    let (_, body) = reply_to_raw(&raw, &queue.name, json, br#"["hi"]"#).await;
    assert_eq!(decode_fault(&body).kind, "unsupported_content_type");
    let gzip = request("echo").with_content_encoding("gzip".into());
    let (_, body) = reply_to_raw(&raw, &queue.name, gzip, &echo).await;
    assert_eq!(decode_fault(&body).kind, "unsupported_content_type");

    // No correlation id: the fault reply goes out without one.
    let anonymous = BasicProperties::default().with_type("echo".into());
    let (properties, body) = reply_to_raw(&raw, &queue.name, anonymous, &echo).await;
    assert!(properties.correlation_id().is_none());
    let fault = decode_fault(&body);
    assert_eq!(fault.kind, "bad_request");
    assert!(
        fault.message.contains("correlation_id"),
        "{}",
        fault.message
    );

    // No content type at all is accepted (MessagePack is assumed).
    let bare = BasicProperties::default()
        .with_type("echo".into())
        .with_correlation_id("bare".into());
    let (_, body) = reply_to_raw(&raw, &queue.name, bare, &echo).await;
    let reply: std::collections::HashMap<String, String> =
        rmp_serde::from_slice(&body).expect("ok reply");
    assert_eq!(reply["ok"], "hi");

    // A reply_to naming a queue that does not exist: the reply is lost, the
    // request is acknowledged, and the server serves on.
    let nowhere =
        request("echo").with_reply_to(format!("rpc-reply.gone.{}", uuid::Uuid::new_v4()).into());
    raw.publish(&queue.name, &echo, nowhere)
        .await
        .expect("publish");

    let (_, lab) = lab_client(&connection, &queue).await;
    assert_eq!(
        lab.echo("still here".into()).await.expect("echo"),
        "still here"
    );
    // Only the well-formed requests ran, once each; nothing is left queued.
    rpc_tests::within(
        rpc_tests::PATIENCE,
        "the lost-reply request to run",
        async {
            while control.handled.load(std::sync::atomic::Ordering::SeqCst) < 3 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        },
    )
    .await;
    assert_eq!(control.handled.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(raw.message_count(&queue.name).await.expect("count"), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_naming_an_application_queue_is_refused() {
    let victim = TestQueue::new("victim");
    let raw = Raw::open().await.expect("raw connection");
    raw.channel
        .queue_declare(
            victim.name.as_str().into(),
            rpc_runtime::lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            rpc_runtime::lapin::types::FieldTable::default(),
        )
        .await
        .expect("declare the victim queue");
    // A prefetch of 1: the call after the hostile request is only delivered
    // once the hostile one is settled.
    let fixture = LabFixture::builder("injection").prefetch(1).start().await;
    // Borrowed field by field, so that its server can be shut down midway.
    let LabFixture {
        ref queue,
        ref connection,
        ref control,
        ref lab,
        ..
    } = fixture;
    let echo = rmp_serde::to_vec(&("injected",)).expect("encode");

    let hostile = request("echo").with_reply_to(victim.name.as_str().into());
    raw.publish(&queue.name, &echo, hostile)
        .await
        .expect("publish");
    assert_eq!(lab.echo("after".into()).await.expect("echo"), "after");
    assert_eq!(raw.message_count(&victim.name).await.expect("count"), 0);
    assert_eq!(
        control.handled.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the hostile request did not run"
    );
    assert_eq!(
        raw.message_count(&queue.name).await.expect("count"),
        0,
        "nor was it requeued"
    );
    fixture.server.shutdown().await;

    // A server configured to trust every client replies anywhere.
    let trusting = rpc_runtime::Server::builder()
        .queue(&queue.name)
        .prefetch(1)
        .reply_to_policy(rpc_runtime::ReplyToPolicy::any())
        .serve(connection, rpc_tests::lab_server("s2", control))
        .await
        .expect("serve");
    let allowed = request("echo").with_reply_to(victim.name.as_str().into());
    raw.publish(&queue.name, &echo, allowed)
        .await
        .expect("publish");
    assert_eq!(lab.echo("after".into()).await.expect("echo"), "after");
    assert_eq!(raw.message_count(&victim.name).await.expect("count"), 1);
    trusting.shutdown().await;
}
