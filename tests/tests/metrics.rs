//! Metrics through the `metrics` facade: calls by outcome, call latency,
//! calls in flight on the client; requests by outcome, handler latency,
//! faults by kind, redeliveries, in flight on the server. Labels never take
//! a value from a request.
//!
//! Alone in its binary: it installs the process's global recorder.

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use rpc_runtime::{RpcError, lapin::BasicProperties};
use rpc_tests::{
    LabControl, LabFixture, PATIENCE, Point, Shape, TestQueue, connect, lab_client, raw, serve_lab,
    within,
};
use std::{
    collections::HashMap,
    future::IntoFuture,
    sync::{Mutex, OnceLock},
    time::Duration,
};

/// A metric's value by name and sorted labels.
type Values = HashMap<(String, Vec<(String, String)>), Value>;

/// What the tests read of a metric.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    /// How many samples a histogram got.
    Samples(usize),
}

/// Every value recorded so far. A snapshot takes every value away from the
/// recorder (resetting it) (and the tests of this binary run at once), so
/// snapshots are added up here.
fn values(snapshotter: &Snapshotter) -> Values {
    static ALL: OnceLock<Mutex<Values>> = OnceLock::new();
    let mut all = ALL.get_or_init(Mutex::default).lock().expect("lock");
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let mut labels: Vec<(String, String)> = key
            .key()
            .labels()
            .map(|label| (label.key().to_owned(), label.value().to_owned()))
            .collect();
        labels.sort();
        let entry = (key.key().name().to_owned(), labels);
        let value = match value {
            DebugValue::Counter(count) => Value::Counter(count),
            DebugValue::Gauge(value) => Value::Gauge(value.into_inner()),
            DebugValue::Histogram(samples) => Value::Samples(samples.len()),
        };
        match (all.get_mut(&entry), value) {
            (Some(Value::Counter(total)), Value::Counter(more)) => *total += more,
            (Some(Value::Samples(total)), Value::Samples(more)) => *total += more,
            // A snapshot resets gauges too: what it reads is a change.
            (Some(Value::Gauge(total)), Value::Gauge(more)) => *total += more,
            (_, value) => {
                all.insert(entry, value);
            }
        }
    }
    all.clone()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    labels.sort();
    labels
}

fn counter(values: &Values, name: &str, pairs: &[(&str, &str)]) -> u64 {
    match values.get(&(name.to_owned(), labels(pairs))) {
        Some(Value::Counter(count)) => *count,
        None => 0,
        Some(other) => panic!("{name} is no counter: {other:?}"),
    }
}

fn histogram_len(values: &Values, name: &str, pairs: &[(&str, &str)]) -> usize {
    match values.get(&(name.to_owned(), labels(pairs))) {
        Some(Value::Samples(samples)) => *samples,
        other => panic!("{name} {pairs:?} is no histogram: {other:?}"),
    }
}

fn gauge(values: &Values, name: &str, pairs: &[(&str, &str)]) -> f64 {
    match values.get(&(name.to_owned(), labels(pairs))) {
        Some(Value::Gauge(value)) => *value,
        other => panic!("{name} {pairs:?} is no gauge: {other:?}"),
    }
}

/// The process's recorder, installed by the first test that asks.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this process");
        snapshotter
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_requests_are_counted_by_method_and_outcome() {
    let snapshotter = snapshotter();

    let fixture = LabFixture::start("metrics").await;
    let lab = &fixture.lab;
    for i in 0..3 {
        assert_eq!(lab.add(i, 1).await.expect("add"), i + 1);
    }
    lab.describe(Shape::Square(-1.0), Point { x: 0, y: 0 })
        .await
        .expect_err("the method's own error");
    lab.explode("on purpose".into())
        .await
        .expect_err("a handler_panicked fault");
    let timed_out = lab.nap(2_000).timeout(Duration::from_millis(100)).await;
    assert!(matches!(timed_out, Err(RpcError::Timeout { .. })));

    // A request naming no method, published raw: counted as `unknown`.
    let raw = raw::Raw::open().await.expect("raw");
    let (reply_to, mut replies) = raw.reply_queue().await.expect("reply queue");
    let properties = BasicProperties::default()
        .with_type("no-such-method-7f3a".into())
        .with_correlation_id("raw-1".into())
        .with_reply_to(reply_to.as_str().into());
    raw.publish(&fixture.queue.name, &[0x90], properties)
        .await
        .expect("publish");
    raw::next_reply(&mut replies).await;

    // The napping handler finishes after its caller gave up.
    within(PATIENCE, "the server to finish", async {
        while fixture.server.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let values = values(snapshotter);
    let client = |method, outcome| {
        counter(
            &values,
            "rpc_client_calls_total",
            &[("service", "Lab"), ("method", method), ("outcome", outcome)],
        )
    };
    assert_eq!(client("add", "ok"), 3);
    assert_eq!(client("describe", "error"), 1);
    assert_eq!(client("explode", "fault"), 1);
    assert_eq!(client("nap", "timeout"), 1);
    assert_eq!(client("add", "timeout"), 0);
    assert_eq!(
        histogram_len(
            &values,
            "rpc_client_call_duration_seconds",
            &[("service", "Lab"), ("method", "add")]
        ),
        3
    );
    assert_eq!(
        gauge(
            &values,
            "rpc_client_calls_in_flight",
            &[("service", "Lab"), ("method", "add")]
        ),
        0.0
    );

    let server = |method, outcome| {
        counter(
            &values,
            "rpc_server_requests_total",
            &[("service", "Lab"), ("method", method), ("outcome", outcome)],
        )
    };
    assert_eq!(server("add", "ok"), 3);
    assert_eq!(server("describe", "error"), 1);
    assert_eq!(server("explode", "fault"), 1);
    assert_eq!(
        server("nap", "ok"),
        1,
        "it ran: it was delivered before its deadline"
    );
    assert_eq!(server("unknown", "fault"), 1);
    let faults = |kind| {
        counter(
            &values,
            "rpc_server_faults_total",
            &[("service", "Lab"), ("kind", kind)],
        )
    };
    assert_eq!(faults("handler_panicked"), 1);
    assert_eq!(faults("unknown_method"), 1);
    assert_eq!(
        histogram_len(
            &values,
            "rpc_server_handler_duration_seconds",
            &[("service", "Lab"), ("method", "add")]
        ),
        3
    );
    assert_eq!(
        gauge(
            &values,
            "rpc_server_requests_in_flight",
            &[("service", "Lab")]
        ),
        0.0
    );
    // No label took the name the raw request chose.
    assert!(
        values
            .keys()
            .all(|(_, labels)| labels.iter().all(|(_, value)| !value.contains("7f3a")))
    );
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_are_counted() {
    let snapshotter = snapshotter();
    let queue = TestQueue::new("metrics-redelivery");
    // A server holds a request, then its connection dies: the broker hands
    // the request to a second server, marked redelivered.
    let doomed = connect("metrics-doomed").await;
    let first_control = LabControl::default();
    let first = serve_lab(&doomed, &queue, "first", &first_control, 1).await;
    let connection = connect("metrics-redelivery").await;
    let (_, lab) = lab_client(&connection, &queue).await;
    let held = tokio::spawn(lab.hold(1).into_future());
    assert_eq!(first_control.next_started().await, 1);
    let second_control = LabControl::default();
    let second = serve_lab(&connection, &queue, "second", &second_control, 1).await;
    drop(first);
    doomed.close().await;
    assert_eq!(second_control.next_started().await, 1);
    second_control.release(1);
    let (name, redelivered) = within(PATIENCE, "the redelivered call", held)
        .await
        .expect("task")
        .expect("answered by the second server");
    assert_eq!((name.as_str(), redelivered), ("second", true));
    let values = values(snapshotter);
    assert_eq!(
        counter(
            &values,
            "rpc_server_redeliveries_total",
            &[("service", "Lab"), ("method", "hold")]
        ),
        1
    );
    second.shutdown().await;
}
