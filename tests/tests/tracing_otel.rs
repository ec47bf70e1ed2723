//! With the `opentelemetry` feature: calls and requests join the
//! application's OpenTelemetry traces. A Rust client's call span, the Rust
//! server's request span and a Python client instrumented with
//! OpenTelemetry all end in one trace, each request span the child of its
//! caller's span, exported here to memory.
//!
//! Alone in its binary (it installs the global subscriber), and built only
//! with the tests' `otel` feature: `cargo test -p rpc-tests --features otel
//! --test tracing_otel` (scripts/test.sh runs it).

use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rpc_tests::{LabFixture, PATIENCE, python, within};
use tracing::Instrument;
use tracing_subscriber::prelude::*;

/// The exported span named `name` whose attribute `key` is `value`.
fn exported(exporter: &InMemorySpanExporter, name: &str, key: &str, value: &str) -> SpanData {
    let spans = exporter.get_finished_spans().expect("exported spans");
    spans
        .into_iter()
        .find(|span| {
            span.name == name
                && span.attributes.iter().any(|attribute| {
                    attribute.key.as_str() == key && attribute.value.as_str() == value
                })
        })
        .unwrap_or_else(|| panic!("no {name} span with {key} = {value}"))
}

/// Waits until the span is exported (spans end as their tasks finish).
async fn wait_exported(
    exporter: &InMemorySpanExporter,
    name: &str,
    key: &str,
    value: &str,
) -> SpanData {
    within(PATIENCE, "a span to be exported", async {
        loop {
            let found = std::panic::catch_unwind(|| exported(exporter, name, key, value));
            if let Ok(span) = found {
                return span;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_python_spans_join_one_opentelemetry_trace() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("rpc-tests")))
        .init();
    let fixture = LabFixture::start("otel").await;

    // A call made inside an application span: the call is its child, the
    // request the call's.
    let root = tracing::info_span!("checkout");
    let report = fixture
        .lab
        .context()
        .into_future_in(&root)
        .await
        .expect("context");
    drop(root);
    let correlation_id = report.correlation_id.clone().expect("two-way");
    let call = wait_exported(&exporter, "rpc.call", "correlation_id", &correlation_id).await;
    let request = wait_exported(&exporter, "rpc.request", "correlation_id", &correlation_id).await;
    let root = exporter
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .find(|span| span.name == "checkout")
        .expect("the application's span, ended");
    let trace_id = root.span_context.trace_id();
    assert_eq!(call.span_context.trace_id(), trace_id);
    assert_eq!(call.parent_span_id, root.span_context.span_id());
    assert_eq!(request.span_context.trace_id(), trace_id);
    assert_eq!(request.parent_span_id, call.span_context.span_id());
    assert!(request.parent_span_is_remote);
    // The handler sees the OpenTelemetry ids.
    assert_eq!(report.trace_id, trace_id.to_string());
    assert_eq!(report.span_id, request.span_context.span_id().to_string());

    // A Python client with the OpenTelemetry SDK: its span is the parent.
    if python::python().is_some() {
        let lines = python::run("context_client.py", &[fixture.queue.name.as_str()])
            .await
            .expect("a usable Python");
        let sent: Vec<&str> = lines[0].split_whitespace().collect();
        let python_trace = sent[1].strip_prefix("trace_id=").expect("trace id");
        let python_span = sent[2].strip_prefix("span_id=").expect("span id");
        let request = wait_exported(&exporter, "rpc.request", "user_id", "guest").await;
        let request = if request.span_context.trace_id().to_string() == python_trace {
            request
        } else {
            // The Rust client's request above also says `guest`: find the
            // Python one by its trace.
            exporter
                .get_finished_spans()
                .expect("spans")
                .into_iter()
                .find(|span| span.span_context.trace_id().to_string() == python_trace)
                .expect("the request of the Python client")
        };
        assert_eq!(
            request.span_context.trace_id(),
            TraceId::from_hex(python_trace).expect("hex")
        );
        assert_eq!(
            request.parent_span_id,
            SpanId::from_hex(python_span).expect("hex")
        );
        assert_eq!(lines[1], format!("seen trace_id={python_trace}"));
    }
    fixture.shutdown().await;
}

/// Awaits a call inside a span of the application's.
trait InSpan: std::future::IntoFuture + Sized {
    fn into_future_in(
        self,
        span: &tracing::Span,
    ) -> tracing::instrument::Instrumented<Self::IntoFuture> {
        // Made inside the span, so that the call's span is its child.
        let future = span.in_scope(|| self.into_future());
        future.instrument(span.clone())
    }
}

impl<T: std::future::IntoFuture> InSpan for T {}
