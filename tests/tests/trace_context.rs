//! The trace context a server passes on (PROTOCOL.md §2): the calls a
//! handler makes continue its request's trace, wherever they are awaited,
//! and carry the caller's `tracestate`, as W3C Trace Context asks of a
//! receiver: checked, and cut to 512 bytes. A caller chooses that header,
//! and it must not grow the handler's own requests past what a frame
//! carries.

use futures_util::StreamExt;
use rpc_runtime::{
    Client, RequestContext, Server,
    lapin::{
        BasicProperties,
        options::{BasicConsumeOptions, QueueDeclareOptions},
        types::{AMQPValue, FieldTable},
    },
    rpc_service,
};
use rpc_tests::{
    LabClient, LabFixture, PATIENCE, TestQueue, connect,
    raw::{Raw, next_reply},
    within,
};
use std::{collections::HashMap, future::IntoFuture};

#[rpc_service]
pub trait Forwarder {
    /// Sends a one-way request to `queue`, from the handler.
    async fn forward(&self, queue: String) -> Result<(), String>;
}

struct Forwarding(Client);

impl Forwarder for Forwarding {
    async fn forward(&self, queue: String) -> Result<(), String> {
        self.0
            .call_raw(&queue, "Sink", "sink", vec![0x90])
            .one_way()
            .await
            .map_err(|error| error.to_string())
    }
}

#[rpc_service]
pub trait Spawner {
    /// The handler's trace id, and those of two calls it makes: one awaited
    /// in the handler, one made there and awaited in a task of its own.
    async fn traces(&self) -> (String, String, String);
}

struct Spawning(LabClient);

impl Spawner for Spawning {
    async fn traces(&self) -> (String, String, String) {
        let own = RequestContext::current().map(|request| request.trace_id());
        let awaited = self.0.context().await.map(|report| report.trace_id);
        // As `Call`'s documentation shows: `into_future` in the handler, the
        // future awaited by a task that has no request context.
        let spawned = tokio::spawn(self.0.context().into_future())
            .await
            .map(|report| report.map(|report| report.trace_id));
        (
            own.unwrap_or_default(),
            awaited.unwrap_or_default(),
            spawned.ok().and_then(Result::ok).unwrap_or_default(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_a_handler_makes_continue_its_trace_wherever_they_are_awaited() {
    let fixture = LabFixture::start("trace-context-spawned").await;
    let queue = TestQueue::new("trace-context-spawner");
    let server = Server::builder()
        .queue(&queue.name)
        .serve(
            &fixture.connection,
            SpawnerServer::new(Spawning(fixture.lab.clone())),
        )
        .await
        .expect("serve");
    let spawner = SpawnerClient::new(fixture.client.clone()).with_queue(&queue.name);
    let (own, awaited, spawned) = within(PATIENCE, "the handler's calls", spawner.traces())
        .await
        .expect("traces");
    assert_eq!(own.len(), 32, "{own}");
    assert_eq!(awaited, own);
    assert_eq!(spawned, own);
    server.shutdown().await;
    fixture.shutdown().await;
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn text(value: Option<&AMQPValue>) -> Option<String> {
    match value? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        other => panic!("not a string: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_tracestate_is_passed_on_checked_and_cut() {
    let connection = connect("trace-context").await;
    let queue = TestQueue::new("trace-context");
    let client = Client::new(&connection).await.expect("client");
    let server = Server::builder()
        .queue(&queue.name)
        .serve(&connection, ForwarderServer::new(Forwarding(client)))
        .await
        .expect("serve");

    let raw = Raw::open().await.expect("raw connection");
    let sink = TestQueue::new("trace-context-sink");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    raw.channel
        .queue_declare(sink.name.as_str().into(), exclusive, FieldTable::default())
        .await
        .expect("declare the sink");
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let mut forwarded = raw
        .channel
        .basic_consume(
            sink.name.as_str().into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .expect("consume the sink");
    let (reply_to, mut replies) = raw.reply_queue().await.expect("reply queue");

    // Thirty entries of 24 bytes (W3C allows 32): the first twenty fit in
    // 512.
    let entries: Vec<String> = (0..30)
        .map(|n| format!("k{n:02}={}", "v".repeat(20)))
        .collect();
    let cases = [
        (
            "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7".to_owned(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7".to_owned()),
        ),
        (entries.join(","), Some(entries[..20].join(","))),
        // Not a tracestate: an upper-case key.
        ("Upper=1".to_owned(), None),
        // Within a frame as it comes, but not with the handler's own
        // headers: it used to close the server's connection, again at each
        // redelivery.
        (format!("big={}", "v".repeat(130_000)), None),
    ];
    for (n, (tracestate, expected)) in cases.into_iter().enumerate() {
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::LongString(TRACEPARENT.into()),
        );
        headers.insert(
            "tracestate".into(),
            AMQPValue::LongString(tracestate.as_str().into()),
        );
        let properties = BasicProperties::default()
            .with_type("forward".into())
            .with_correlation_id(format!("case-{n}").as_str().into())
            .with_reply_to(reply_to.as_str().into())
            .with_headers(headers);
        let body = rmp_serde::to_vec(&(sink.name.as_str(),)).expect("arguments");
        raw.publish(&queue.name, &body, properties)
            .await
            .expect("publish");
        let (_, reply) = within(PATIENCE, "the reply", next_reply(&mut replies)).await;
        let reply: HashMap<String, Option<u8>> =
            rmp_serde::from_slice(&reply).expect("an ok reply");
        assert!(reply.contains_key("ok"), "case {n}: {reply:?}");

        let delivery = within(PATIENCE, "the forwarded request", forwarded.next())
            .await
            .expect("the sink's consumer")
            .expect("a delivery");
        let headers = delivery.properties.headers().clone().unwrap_or_default();
        let parent = text(headers.inner().get("traceparent")).expect("a traceparent");
        assert!(
            parent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "case {n}: the caller's trace goes on: {parent}"
        );
        let passed_on = text(headers.inner().get("tracestate"));
        assert_eq!(passed_on, expected, "case {n}");
    }
    assert_eq!(connection.reconnections(), 0);
    server.shutdown().await;
    connection.close().await;
}
