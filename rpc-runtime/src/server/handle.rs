//! One request, from its delivery to its settlement, inside its own span:
//! checked ([`admission`](super::admission)); skipped if its caller's
//! deadline has passed; shown to the server's interceptors; run (the
//! service's dispatcher, in the request's [`RequestContext`], panics
//! caught); answered and settled ([`Responder`]); counted
//! ([`observe`](super::observe)), and logged when it could not run.

use super::{
    admission::{Admission, Rules},
    context::RequestContext,
    direct_replies::{Answerable, DirectReplies},
    log_budget::LogBudget,
    observe::{MethodMetrics, Outcome, ServerMetrics},
    respond::Responder,
    service::Service,
};
use crate::{
    protocol::{
        describe::DESCRIBE_METHOD,
        fault::{Fault, FaultKind},
        headers::{self, HeaderValue, TraceParent},
        reply::ReplyBody,
    },
    spans::span_at,
    trace::{self, SpanId, TraceId, TraceIds},
    transport::{
        properties::IncomingProperties,
        server::{Incoming, RequestTag},
    },
};
use futures_util::FutureExt;
use metrics::Gauge;
use std::{
    any::Any,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Instant, SystemTime},
};
use tracing::{Instrument, debug, error, field, warn};

/// Looks at a request before its method runs, and may refuse it with a
/// fault (see [`ServerBuilder::interceptor`](crate::ServerBuilder::interceptor)).
pub(crate) type Interceptor = Arc<dyn Fn(&mut RequestContext) -> Result<(), Fault> + Send + Sync>;

/// What every handler of a server shares.
pub(crate) struct Handling<S> {
    pub(crate) service: S,
    pub(crate) queue: String,
    pub(crate) rules: Rules,
    pub(crate) interceptors: Vec<Interceptor>,
    /// The level of the requests' spans.
    pub(crate) span_level: tracing::Level,
    /// The answer to `rpc.describe`, if the server gives it.
    pub(crate) description: Option<ReplyBody>,
    pub(crate) metrics: ServerMetrics,
    /// The budget of the warnings of refused requests and faults.
    pub(crate) faults: LogBudget,
    /// The requests it answered at direct reply-to addresses.
    pub(crate) direct_replies: DirectReplies,
}

/// Counts a request as in flight for as long as it lives (in the server's
/// count and its gauge), however its handler ends.
pub(crate) struct InFlight(Arc<AtomicUsize>, Gauge);

impl InFlight {
    pub(crate) fn enter(counter: &Arc<AtomicUsize>, gauge: &Gauge) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        gauge.increment(1.0);
        Self(counter.clone(), gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        self.1.decrement(1.0);
    }
}

/// Handles one request: checks it, runs its method, and has the responder
/// publish the reply and settle the request.
///
/// A function returning an `async move` block rather than an `async fn`: the
/// latter stores its arguments twice, and the future is moved on its way to
/// the executor.
pub(crate) fn handle<S: Service>(
    handling: Arc<Handling<S>>,
    responder: Arc<Responder>,
    request: Incoming,
    in_flight: InFlight,
) -> impl Future<Output = ()> + Send + 'static {
    let Incoming {
        properties,
        body,
        redelivered,
        delivery,
    } = request;
    async move {
        let _in_flight = in_flight;
        let method = handling.metrics.method(properties.view().method);
        if redelivered {
            method.redelivered();
        }
        let span = request_span::<S>(handling.span_level, &handling.queue, &properties);
        // Before the span is first entered: with OpenTelemetry, its parent
        // can be set only until then.
        let trace = continue_trace(&span, &properties);
        let request = Request {
            properties,
            body,
            redelivered,
            delivery,
            method,
            trace,
        };
        let started = Instant::now();
        let outcome = handle_request(&handling, &responder, request, &span)
            .instrument(span.clone())
            .await;
        method.ended(outcome);
        if !span.is_disabled() {
            span.record("outcome", field::display(outcome.as_str()));
            span.record("duration_ms", started.elapsed().as_secs_f64() * 1e3);
        }
    }
}

/// A request on its way through its handler.
struct Request<'a> {
    properties: Arc<IncomingProperties>,
    body: Vec<u8>,
    redelivered: bool,
    delivery: RequestTag,
    method: &'a MethodMetrics,
    trace: TraceIds,
}

/// The span of a request: a child of the caller's span, in its trace.
fn request_span<S: Service>(
    level: tracing::Level,
    queue: &str,
    properties: &IncomingProperties,
) -> tracing::Span {
    let request = properties.view();
    span_at!(
        level,
        target: "rpc_runtime::server",
        "rpc.request",
        otel.kind = "server",
        // Displayed: see `client::observe`. What the caller chose escaped:
        // every line logged in the span repeats these fields, and a line
        // break in one would forge a line of the log.
        service = field::display(S::NAME),
        method = field::display(Escaped(request.method.unwrap_or_default())),
        queue = field::display(queue),
        correlation_id = request.correlation_id.map(|id| field::display(Escaped(id))),
        user_id = request.user_id.map(|user| field::display(Escaped(user))),
        trace_id = field::Empty,
        span_id = field::Empty,
        parent_id = field::Empty,
        outcome = field::Empty,
        duration_ms = field::Empty,
    )
}

async fn handle_request<S: Service>(
    handling: &Handling<S>,
    responder: &Responder,
    request: Request<'_>,
    span: &tracing::Span,
) -> Outcome {
    let Request {
        properties,
        body,
        redelivered,
        delivery,
        method,
        trace,
    } = request;
    // First: a fault, too, would be published to its address.
    let direct = handling.direct_replies.key(&properties.view(), &body);
    if redelivered && direct.is_some_and(|request| handling.direct_replies.answered(request)) {
        handling.log_refused(
            &properties,
            &"it came back after this server had answered it at a direct reply-to address (a \
              forged or stale one makes RabbitMQ close the server's connection, and the request \
              would do it again at each redelivery); rejected without running it again",
        );
        responder.reject_without_reply(delivery).await;
        return Outcome::Refused;
    }
    let method_name = match handling.rules.admit(properties.view(), body.len()) {
        Admission::Refuse { reply_to } => {
            handling.log_refused(
                &properties,
                &format_args!(
                    "its reply_to `{reply_to}` is not an allowed reply address (see \
                     ReplyToPolicy); rejected without a reply"
                ),
            );
            responder.reject_without_reply(delivery).await;
            return Outcome::Refused;
        }
        Admission::Fault(fault) => {
            return handling
                .fault(responder, delivery, &properties, direct, fault)
                .await;
        }
        Admission::Run { method } => method,
    };
    let mut context = RequestContext::new(properties.clone(), redelivered, trace, span.clone());
    if let Some(deadline) = context.deadline()
        && SystemTime::now() >= deadline
    {
        // The caller has given up: nothing to run, nothing to tell it.
        debug!("skipping a request whose caller's deadline has passed");
        responder.reject_without_reply(delivery).await;
        return Outcome::Skipped;
    }
    for interceptor in &handling.interceptors {
        // An interceptor is the application's code as a method is: its
        // panic must not leave the request unsettled, holding its prefetch
        // credit for the life of the channel.
        let verdict = std::panic::catch_unwind(AssertUnwindSafe(|| interceptor(&mut context)))
            .unwrap_or_else(|panic| {
                let (fault, message) = panicked(Culprit::Interceptor, method_name, panic);
                handling.log_panic(&properties, Culprit::Interceptor, &message);
                Err(fault)
            });
        if let Err(fault) = verdict {
            return handling
                .fault(responder, delivery, &properties, direct, fault)
                .await;
        }
    }
    if method_name == DESCRIBE_METHOD
        && let Some(description) = &handling.description
    {
        handling
            .reply(
                responder,
                delivery,
                &properties,
                direct,
                Ok(description.bytes.clone()),
            )
            .await;
        return Outcome::Ok;
    }
    let started = Instant::now();
    let run = context.scope(handling.service.dispatch(method_name, &body));
    let result = AssertUnwindSafe(run)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let (fault, message) = panicked(Culprit::Method, method_name, panic);
            handling.log_panic(&properties, Culprit::Method, &message);
            Err(fault)
        });
    method.ran_for(started.elapsed());
    match result {
        Ok(reply) => {
            let outcome = if reply.is_error {
                Outcome::Error
            } else {
                Outcome::Ok
            };
            handling
                .reply(responder, delivery, &properties, direct, Ok(reply.bytes))
                .await;
            outcome
        }
        Err(fault) => {
            handling
                .fault(responder, delivery, &properties, direct, fault)
                .await
        }
    }
}

/// The request's place in its caller's trace (from its `traceparent` and
/// `tracestate`, if any), recorded on its span.
fn continue_trace(span: &tracing::Span, properties: &IncomingProperties) -> TraceIds {
    let traceparent = properties
        .header_bytes(headers::TRACEPARENT)
        .and_then(TraceParent::parse);
    // W3C: a `tracestate` without a valid `traceparent` is discarded, and
    // one that breaks its rules too; a long one is cut.
    let tracestate = match traceparent.and_then(|_| properties.header(headers::TRACESTATE)) {
        Some(HeaderValue::Text(value)) => headers::tracestate(value),
        _ => None,
    };
    let ids = trace::incoming(span, traceparent.as_ref(), tracestate);
    if !span.is_disabled() {
        span.record("trace_id", field::display(TraceId(ids.trace_id)));
        span.record("span_id", field::display(SpanId(ids.span_id)));
        if let Some(parent) = &traceparent {
            span.record("parent_id", field::display(SpanId(parent.span_id)));
        }
    }
    ids
}

impl<S: Service> Handling<S> {
    /// Answers a request that could not run with its fault, logs and counts
    /// it.
    async fn fault(
        &self,
        responder: &Responder,
        delivery: RequestTag,
        properties: &IncomingProperties,
        direct: Option<Answerable>,
        fault: Fault,
    ) -> Outcome {
        // A panic was logged at ERROR where it was caught.
        if fault.kind() != &FaultKind::HandlerPanicked {
            self.log_refused(properties, &fault.for_log());
        }
        self.metrics.fault(fault.kind());
        self.reply(responder, delivery, properties, direct, Err(fault))
            .await;
        Outcome::Fault
    }

    /// Answers a request (see [`Responder::respond`]), noting first if it
    /// is answered at a direct reply-to address (`direct`, see
    /// [`direct_replies`](super::direct_replies)).
    async fn reply(
        &self,
        responder: &Responder,
        delivery: RequestTag,
        properties: &IncomingProperties,
        direct: Option<Answerable>,
        outcome: Result<Vec<u8>, Fault>,
    ) {
        if let Some(request) = direct {
            self.direct_replies.answering(request);
        }
        responder.respond(delivery, properties, outcome).await;
    }

    /// Logs, once, at WARN and within the server's budget (see
    /// [`log_budget`](super::log_budget)), a request that was refused or got
    /// a fault: with its method, correlation id and reason, never its body.
    fn log_refused(&self, properties: &IncomingProperties, reason: &dyn fmt::Display) {
        let Some(suppressed) = self.faults.take() else {
            return;
        };
        let request = properties.view();
        let (method, correlation_id) = (request.method, request.correlation_id);
        let one_way = request.reply_to.is_none();
        // The reason quotes what the caller sent (its method name, content
        // type, reply address): escaped, so that a line break in it cannot
        // forge a line of the log.
        let reason = Escaped(reason);
        warn!(
            service = S::NAME,
            method, correlation_id, one_way, suppressed, "a request could not run: {reason}"
        );
    }

    /// Logs a method's or an interceptor's panic at ERROR, within the same
    /// budget.
    fn log_panic(&self, properties: &IncomingProperties, culprit: Culprit, panic: &str) {
        let Some(suppressed) = self.faults.take() else {
            return;
        };
        let request = properties.view();
        let (method, correlation_id) = (request.method, request.correlation_id);
        error!(
            service = S::NAME,
            method,
            correlation_id,
            suppressed,
            panic,
            "{} panicked; the caller gets a handler_panicked fault",
            culprit.as_str(),
        );
    }
}

/// Text for a log line, its control characters (line breaks, escape
/// sequences) written as Rust escapes (`\n`, `\u{1b}`).
struct Escaped<T>(T);

impl<T: fmt::Display> fmt::Debug for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Escaping<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl fmt::Write for Escaping<'_, '_> {
            fn write_str(&mut self, text: &str) -> fmt::Result {
                for part in text.split_inclusive(char::is_control) {
                    match part.char_indices().last() {
                        Some((at, last)) if last.is_control() => {
                            self.0.write_str(&part[..at])?;
                            write!(self.0, "{}", last.escape_debug())?;
                        }
                        _ => self.0.write_str(part)?,
                    }
                }
                Ok(())
            }
        }
        fmt::write(&mut Escaping(f), format_args!("{}", self.0))
    }
}

/// What panicked while a request was handled.
#[derive(Clone, Copy)]
enum Culprit {
    Method,
    Interceptor,
}

impl Culprit {
    fn as_str(self) -> &'static str {
        match self {
            Culprit::Method => "a service method",
            Culprit::Interceptor => "a server interceptor",
        }
    }
}

/// The fault of a method that panicked, and the panic's message (for the
/// server's log only: it may say more than a caller should see).
fn panicked(culprit: Culprit, method: &str, panic: Box<dyn Any + Send>) -> (Fault, String) {
    let message = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    let fault = Fault::new(
        FaultKind::HandlerPanicked,
        match culprit {
            Culprit::Method => format!("the method `{method}` panicked; see the server's log"),
            Culprit::Interceptor => format!(
                "a server interceptor panicked before the method `{method}` ran; see the \
                 server's log"
            ),
        },
    );
    (fault, message)
}
