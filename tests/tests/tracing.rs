//! Spans and trace context without OpenTelemetry: a span per call and per
//! request, joined in one W3C trace across client and server (the request's
//! parent is the call), continued by the calls a handler makes, and carried
//! by the handler's own logs; at DEBUG unless a builder raises them, and
//! the trace context flows the same when a filter leaves them out.
//!
//! Alone in its binary: it installs the process's global subscriber, a layer
//! that records every span's fields and every event's enclosing spans (and
//! leaves DEBUG spans out while [`QUIET`] says so: the tests take turns).

use rpc_runtime::{Client, RequestContext, Server, rpc_service};
use rpc_tests::{ContextReport, LabClient, LabFixture, PATIENCE, TestQueue, within};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};
use tracing::{
    Level, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{
    Layer, filter::dynamic_filter_fn, layer::Context, prelude::*, registry::LookupSpan,
};

/// While set, the recording layer leaves DEBUG spans out, as an application
/// logging at INFO does.
static QUIET: AtomicBool = AtomicBool::new(false);
/// One test at a time: they set [`QUIET`] and read the one recorder.
static ONE_TEST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A span as recorded: its name and its fields, as text.
#[derive(Debug, Clone, Default)]
struct Recorded {
    name: String,
    level: Option<Level>,
    fields: HashMap<String, String>,
}

impl Recorded {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// An event: its message and the fields of its `rpc.request` span, if any.
#[derive(Debug, Clone)]
struct Event {
    message: String,
    request_trace_id: Option<String>,
}

#[derive(Default)]
struct Recorder {
    spans: Mutex<HashMap<u64, Recorded>>,
    closed: Mutex<Vec<Recorded>>,
    events: Mutex<Vec<Event>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
}

struct RecordingLayer(Arc<Recorder>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for RecordingLayer {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, _: Context<'_, S>) {
        let mut recorded = Recorded {
            name: attrs.metadata().name().to_owned(),
            level: Some(*attrs.metadata().level()),
            fields: HashMap::new(),
        };
        attrs.record(&mut Fields(&mut recorded.fields));
        self.0
            .spans
            .lock()
            .expect("lock")
            .insert(id.into_u64(), recorded);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, _: Context<'_, S>) {
        if let Some(recorded) = self.0.spans.lock().expect("lock").get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut recorded.fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let spans = self.0.spans.lock().expect("lock");
        let request_trace_id = ctx.event_scope(event).and_then(|scope| {
            scope
                .filter_map(|span| spans.get(&span.id().into_u64()))
                .find(|recorded| recorded.name == "rpc.request")
                .and_then(|recorded| recorded.field("trace_id").map(str::to_owned))
        });
        self.0.events.lock().expect("lock").push(Event {
            message: fields.remove("message").unwrap_or_default(),
            request_trace_id,
        });
    }

    fn on_close(&self, id: span::Id, _: Context<'_, S>) {
        if let Some(recorded) = self.0.spans.lock().expect("lock").remove(&id.into_u64()) {
            self.0.closed.lock().expect("lock").push(recorded);
        }
    }
}

fn recorder() -> Arc<Recorder> {
    static RECORDER: OnceLock<Arc<Recorder>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let recorder = Arc::new(Recorder::default());
            tracing_subscriber::registry()
                .with(
                    RecordingLayer(recorder.clone()).with_filter(dynamic_filter_fn(
                        |metadata, _| {
                            !(metadata.is_span()
                                && *metadata.level() == Level::DEBUG
                                && QUIET.load(Ordering::SeqCst))
                        },
                    )),
                )
                .init();
            recorder
        })
        .clone()
}

/// The closed spans named `name` whose `field` is `value`.
fn closed(recorder: &Recorder, name: &str, field: &str, value: &str) -> Vec<Recorded> {
    recorder
        .closed
        .lock()
        .expect("lock")
        .iter()
        .filter(|span| span.name == name && span.field(field) == Some(value))
        .cloned()
        .collect()
}

/// Waits until a closed span named `name` has `field` = `value` (spans close
/// as their tasks finish, a moment after a reply).
async fn wait_closed(recorder: &Recorder, name: &str, field: &str, value: &str) -> Recorded {
    within(PATIENCE, "a span to close", async {
        loop {
            if let Some(span) = closed(recorder, name, field, value).pop() {
                return span;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
}

/// Calls `Lab::context` from within its own handler.
#[rpc_service]
pub trait Relay {
    /// The relay's trace id, and what the inner call's handler saw.
    async fn relay(&self) -> (String, ContextReport);
}

struct Relaying(LabClient);

impl Relay for Relaying {
    async fn relay(&self) -> (String, ContextReport) {
        let request = RequestContext::current().expect("a handler has its context");
        tracing::info!(trace = %request.trace_id(), "relaying to Lab");
        let inner = self.0.context().await.expect("the inner call");
        (request.trace_id().to_string(), inner)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_and_its_request_share_one_trace_and_handlers_continue_it() {
    let _one = ONE_TEST.lock().await;
    let recorder = recorder();
    let fixture = LabFixture::start("tracing").await;

    // One call: the request's span is the call's child, in one trace.
    let report = within(PATIENCE, "a call", fixture.lab.context())
        .await
        .expect("context");
    let correlation_id = report.correlation_id.clone().expect("two-way");
    let call = wait_closed(&recorder, "rpc.call", "correlation_id", &correlation_id).await;
    let request = wait_closed(&recorder, "rpc.request", "correlation_id", &correlation_id).await;
    let trace_id = call.field("trace_id").expect("the call's trace").to_owned();
    assert_eq!(trace_id.len(), 32);
    assert_eq!(request.field("trace_id"), Some(trace_id.as_str()));
    assert_eq!(request.field("parent_id"), call.field("span_id"));
    assert_eq!(request.field("span_id"), Some(report.span_id.as_str()));
    assert_eq!(report.trace_id, trace_id);
    for span in [&call, &request] {
        assert_eq!(span.field("service"), Some("Lab"));
        assert_eq!(span.field("method"), Some("context"));
        assert_eq!(span.field("queue"), Some(fixture.queue.name.as_str()));
        assert_eq!(span.field("outcome"), Some("ok"));
        assert!(span.field("duration_ms").is_some());
        assert_eq!(span.level, Some(rpc_runtime::DEFAULT_SPAN_LEVEL));
    }

    // A handler's call continues its request's trace, and its logs carry
    // the request's span.
    let relay_queue = TestQueue::new("tracing-relay");
    let relay_server = Server::builder()
        .queue(&relay_queue.name)
        .serve(
            &fixture.connection,
            RelayServer::new(Relaying(fixture.lab.clone())),
        )
        .await
        .expect("serve");
    let relay = RelayClient::new(fixture.client.clone()).with_queue(&relay_queue.name);
    let (_, inner) = within(PATIENCE, "a relayed call", relay.relay())
        .await
        .expect("relay");
    let outer_request = wait_closed(&recorder, "rpc.request", "method", "relay").await;
    let outer_trace = outer_request.field("trace_id").expect("a trace").to_owned();
    assert_ne!(
        outer_trace, trace_id,
        "a new call outside any request starts a trace"
    );
    assert_eq!(
        inner.trace_id, outer_trace,
        "the inner request continues it"
    );
    let inner_correlation = inner.correlation_id.expect("two-way");
    let inner_call = wait_closed(&recorder, "rpc.call", "correlation_id", &inner_correlation).await;
    assert_eq!(inner_call.field("trace_id"), Some(outer_trace.as_str()));
    let logged = recorder
        .events
        .lock()
        .expect("lock")
        .iter()
        // The latest: the other test relays too, with its spans left out.
        .rev()
        .find(|event| event.message == "relaying to Lab")
        .cloned()
        .expect("the handler's log line");
    assert_eq!(
        logged.request_trace_id.as_deref(),
        Some(outer_trace.as_str())
    );
    relay_server.shutdown().await;

    // Without trace context, a request starts a trace of its own.
    let untraced = LabClient::new(
        Client::builder()
            .trace_context(false)
            .build(&fixture.connection)
            .await
            .expect("client"),
    )
    .with_queue(&fixture.queue.name);
    let alone = untraced.context().await.expect("context");
    let alone_request = wait_closed(
        &recorder,
        "rpc.request",
        "correlation_id",
        alone.correlation_id.as_deref().expect("two-way"),
    )
    .await;
    assert_eq!(alone_request.field("parent_id"), None);
    assert_eq!(
        alone_request.field("trace_id"),
        Some(alone.trace_id.as_str())
    );
    fixture.shutdown().await;
}

/// An application that logs at INFO leaves the DEBUG spans out: none is
/// recorded, and the trace context flows all the same (a handler's call
/// continues its request's trace). Raised to INFO by the builders, the
/// spans are recorded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_left_out_by_a_filter_still_carry_the_trace_and_a_level_brings_them_back() {
    let _one = ONE_TEST.lock().await;
    let recorder = recorder();
    QUIET.store(true, Ordering::SeqCst);
    let fixture = LabFixture::start("tracing-quiet").await;
    let relay_queue = TestQueue::new("tracing-quiet-relay");
    let relay_server = Server::builder()
        .queue(&relay_queue.name)
        .serve(
            &fixture.connection,
            RelayServer::new(Relaying(fixture.lab.clone())),
        )
        .await
        .expect("serve");
    let relay = RelayClient::new(fixture.client.clone()).with_queue(&relay_queue.name);
    let (outer_trace, inner) = within(PATIENCE, "a relayed call", relay.relay())
        .await
        .expect("relay");
    assert_eq!(outer_trace.len(), 32);
    assert_eq!(
        inner.trace_id, outer_trace,
        "the inner request continues it"
    );
    let inner_correlation = inner.correlation_id.clone().expect("two-way");
    let recorded = |correlation_id: &str| {
        let spans = recorder.spans.lock().expect("lock");
        let closed = recorder.closed.lock().expect("lock");
        spans
            .values()
            .chain(closed.iter())
            .filter(|span| span.field("correlation_id") == Some(correlation_id))
            .count()
    };
    assert_eq!(recorded(&inner_correlation), 0, "no span was recorded");
    relay_server.shutdown().await;

    // Raised to INFO, on both sides: recorded, at INFO.
    let queue = TestQueue::new("tracing-info");
    let server = Server::builder()
        .queue(&queue.name)
        .span_level(Level::INFO)
        .serve(
            &fixture.connection,
            rpc_tests::lab_server("info", &rpc_tests::LabControl::default()),
        )
        .await
        .expect("serve");
    let client = Client::builder()
        .span_level(Level::INFO)
        .build(&fixture.connection)
        .await
        .expect("client");
    let lab = LabClient::new(client).with_queue(&queue.name);
    let report = within(PATIENCE, "a call", lab.context())
        .await
        .expect("context");
    let correlation_id = report.correlation_id.expect("two-way");
    for name in ["rpc.call", "rpc.request"] {
        let span = wait_closed(&recorder, name, "correlation_id", &correlation_id).await;
        assert_eq!(span.level, Some(Level::INFO), "{name}");
        assert_eq!(span.field("trace_id"), Some(report.trace_id.as_str()));
    }
    QUIET.store(false, Ordering::SeqCst);
    server.shutdown().await;
    fixture.shutdown().await;
}
