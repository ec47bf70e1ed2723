//! A server process killed (SIGKILL) in the middle of requests while a second
//! server runs: the broker redelivers the unacknowledged requests to the
//! survivor, and each caller gets exactly one reply, although the method may
//! have run twice (handlers must be idempotent; `RequestContext::redelivered`
//! tells them when a request may have run before).

use rpc_runtime::lapin::{BasicProperties, options::BasicGetOptions};
use rpc_tests::{
    LabControl, LabServerProcess, PATIENCE, TestQueue, amqp_url, connect, lab_client, raw::Raw,
    serve_lab, within,
};
use std::{future::IntoFuture, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_request_loses_no_call_and_sends_no_second_reply() {
    let queue = TestQueue::new("crash");
    let mut doomed = LabServerProcess::start(
        env!("CARGO_BIN_EXE_lab_server"),
        &amqp_url(),
        &queue.name,
        "doomed",
        8,
    )
    .await;

    // A call through the framework...
    let connection = connect("crash-client").await;
    let (client, lab) = lab_client(&connection, &queue).await;
    let call = tokio::spawn(lab.hold(1).into_future());
    assert_eq!(doomed.next_started().await, 1);

    // ...and one published raw, whose replies land in a queue nobody
    // consumes, so that they can be counted.
    let raw = Raw::open().await.expect("raw connection");
    let replies = raw.counting_reply_queue().await.expect("reply queue");
    let mut args = rpc_runtime::__private::ArgsEncoder::new(1);
    args.arg("tag", &2u32);
    let properties = BasicProperties::default()
        .with_type("hold".into())
        .with_correlation_id("crash-2".into())
        .with_reply_to(replies.as_str().into())
        .with_content_type("application/msgpack".into());
    raw.publish(&queue.name, &args.finish().expect("encode"), properties)
        .await
        .expect("publish");
    assert_eq!(doomed.next_started().await, 2);

    // A second server joins; the first dies with both requests unacknowledged.
    let control = LabControl::default();
    let survivor = serve_lab(
        &connect("crash-survivor").await,
        &queue,
        "survivor",
        &control,
        8,
    )
    .await;
    doomed.kill().await;
    let mut redelivered = [control.next_started().await, control.next_started().await];
    redelivered.sort();
    assert_eq!(
        redelivered,
        [1, 2],
        "both requests come back to the survivor"
    );
    control.release(2);

    let (name, was_redelivered) = within(PATIENCE, "the call", call)
        .await
        .expect("task")
        .expect("the caller still gets its answer");
    assert_eq!((name.as_str(), was_redelivered), ("survivor", true));
    assert_eq!(client.pending_calls(), 0);

    // Exactly one reply to the raw request: the doomed server died before
    // replying, and the survivor replied once.
    within(PATIENCE, "the raw request's reply", async {
        while raw.message_count(&replies).await.expect("count") == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    within(PATIENCE, "the survivor to settle both requests", async {
        while control.handled.load(std::sync::atomic::Ordering::SeqCst) < 2
            || survivor.in_flight() > 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(raw.message_count(&replies).await.expect("count"), 1);
    let reply = raw
        .channel
        .basic_get(replies.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("the reply");
    assert_eq!(
        reply
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("crash-2")
    );
    let body: std::collections::HashMap<String, (String, bool)> =
        rmp_serde::from_slice(&reply.delivery.data).expect("an ok reply");
    assert_eq!(body["ok"], ("survivor".to_owned(), true));
    assert_eq!(raw.message_count(&queue.name).await.expect("count"), 0);
    survivor.shutdown().await;
}
