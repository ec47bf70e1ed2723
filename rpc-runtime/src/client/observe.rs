//! What a client tells about its calls: a `tracing` span per call, and
//! metrics through the `metrics` facade (the application installs a
//! recorder and picks the exporter; without one, the handles are no-ops,
//! registered once per method of a service, at its first call).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `rpc_client_calls_total` | counter | `service`, `method`, `outcome`: `ok`, `error` (the method's own), and one per [`RpcError`] kind: `fault`, `timeout`, `connection_lost`, `not_connected`, `no_such_service`, `no_server`, `refused`, `not_sent`, `decode_error`, `closed` |
//! | `rpc_client_call_duration_seconds` | histogram | `service`, `method` |
//! | `rpc_client_calls_in_flight` | gauge | `service`, `method` |

use crate::{error::RpcError, spans::span_at};
use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use std::{
    collections::HashMap,
    fmt,
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};
use tracing::field;

/// One method of one service, as a generated client calls it: its names,
/// and its metrics once registered. A `static` in the generated code, so
/// that a call costs no registration.
#[doc(hidden)]
pub struct CallSite {
    pub(crate) service: &'static str,
    pub(crate) method: &'static str,
    metrics: OnceLock<MethodMetrics>,
}

impl CallSite {
    /// The site of `service`'s `method`.
    pub const fn new(service: &'static str, method: &'static str) -> Self {
        Self {
            service,
            method,
            metrics: OnceLock::new(),
        }
    }

    /// The site of a method named at run time ([`Client::call_raw`]): made
    /// and leaked at the first call of each `service`, `method` pair and
    /// found again after, so that its metrics are registered once, as a
    /// generated client's. Each distinct pair stays for the life of the
    /// process, as its metrics do in any recorder.
    ///
    /// [`Client::call_raw`]: crate::Client::call_raw
    pub(crate) fn interned(service: &str, method: &str) -> &'static CallSite {
        // By service, then method: found by `&str`, with no allocation.
        type Sites = HashMap<Box<str>, HashMap<Box<str>, &'static CallSite>>;
        static SITES: OnceLock<Mutex<Sites>> = OnceLock::new();
        let mut sites = SITES
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(site) = sites.get(service).and_then(|methods| methods.get(method)) {
            return site;
        }
        let site: &'static CallSite = Box::leak(Box::new(CallSite::new(
            Box::leak(Box::from(service)),
            Box::leak(Box::from(method)),
        )));
        sites
            .entry(Box::from(service))
            .or_default()
            .insert(Box::from(method), site);
        site
    }

    fn metrics(&self) -> &MethodMetrics {
        self.metrics
            .get_or_init(|| MethodMetrics::register(self.service, self.method))
    }

    /// Starts observing a call: its span at `level` (a child of the current
    /// span) and its metrics, until [`Observed::ended`].
    pub(crate) fn start(&'static self, queue: &str, level: tracing::Level) -> Observed {
        let metrics = self.metrics();
        metrics.in_flight.increment(1.0);
        let span = span_at!(
            level,
            target: "rpc_runtime::client",
            "rpc.call",
            otel.kind = "client",
            // Displayed, not debugged: a formatting subscriber (`fmt`) then
            // writes each string at once instead of escaping it character
            // by character, which costs more than the rest of the span.
            service = field::display(self.service),
            method = field::display(self.method),
            queue = field::display(queue),
            correlation_id = field::Empty,
            trace_id = field::Empty,
            span_id = field::Empty,
            outcome = field::Empty,
            duration_ms = field::Empty,
        );
        Observed {
            site: self,
            span,
            started: Instant::now(),
            ended: false,
        }
    }
}

impl fmt::Debug for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.service, self.method)
    }
}

/// How a call ended, as its metrics and span say.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// The method returned its own error.
    Error,
    Fault,
    Timeout,
    ConnectionLost,
    NotConnected,
    NoSuchService,
    NoServer,
    Refused,
    /// Not sent: its arguments, size, queue or method name, or headers were refused
    /// locally, or an interceptor refused it.
    NotSent,
    DecodeError,
    Closed,
}

impl Outcome {
    const ALL: [Outcome; 12] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Fault,
        Outcome::Timeout,
        Outcome::ConnectionLost,
        Outcome::NotConnected,
        Outcome::NoSuchService,
        Outcome::NoServer,
        Outcome::Refused,
        Outcome::NotSent,
        Outcome::DecodeError,
        Outcome::Closed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Fault => "fault",
            Outcome::Timeout => "timeout",
            Outcome::ConnectionLost => "connection_lost",
            Outcome::NotConnected => "not_connected",
            Outcome::NoSuchService => "no_such_service",
            Outcome::NoServer => "no_server",
            Outcome::Refused => "refused",
            Outcome::NotSent => "not_sent",
            Outcome::DecodeError => "decode_error",
            Outcome::Closed => "closed",
        }
    }

    /// The outcome of a call that failed with `error`.
    pub(crate) fn of(error: &RpcError) -> Self {
        match error {
            RpcError::Timeout { .. } => Outcome::Timeout,
            RpcError::NoSuchService { .. } | RpcError::QueueUnavailable { .. } => {
                Outcome::NoSuchService
            }
            RpcError::NoServer { .. } => Outcome::NoServer,
            RpcError::Refused { .. } => Outcome::Refused,
            RpcError::ConnectionLost { .. } => Outcome::ConnectionLost,
            RpcError::NotConnected { .. } => Outcome::NotConnected,
            RpcError::Fault { .. } => Outcome::Fault,
            RpcError::Decode { .. } => Outcome::DecodeError,
            RpcError::Closed => Outcome::Closed,
            RpcError::Encode { .. }
            | RpcError::InvalidQueueName { .. }
            | RpcError::InvalidMethodName { .. }
            | RpcError::RequestTooLarge { .. }
            | RpcError::InvalidHeader { .. }
            | RpcError::Intercepted { .. }
            | RpcError::ChannelRefused { .. } => Outcome::NotSent,
        }
    }
}

/// One method's metrics.
struct MethodMetrics {
    outcomes: [Counter; Outcome::ALL.len()],
    duration: Histogram,
    in_flight: Gauge,
}

impl MethodMetrics {
    fn register(service: &'static str, method: &'static str) -> Self {
        let outcome = |outcome: Outcome| counter!("rpc_client_calls_total", "service" => service, "method" => method, "outcome" => outcome.as_str());
        Self {
            outcomes: Outcome::ALL.map(outcome),
            duration: histogram!("rpc_client_call_duration_seconds", "service" => service, "method" => method),
            in_flight: gauge!("rpc_client_calls_in_flight", "service" => service, "method" => method),
        }
    }
}

/// A call being observed: its span, and when it started.
pub(crate) struct Observed {
    site: &'static CallSite,
    pub(crate) span: tracing::Span,
    started: Instant,
    ended: bool,
}

impl Observed {
    /// The method called.
    pub(crate) fn method(&self) -> &'static str {
        self.site.method
    }

    /// Counts the call as ended with `outcome`.
    pub(crate) fn ended(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.ended, true) {
            return;
        }
        let metrics = self.site.metrics();
        let elapsed: Duration = self.started.elapsed();
        metrics.in_flight.decrement(1.0);
        metrics.outcomes[outcome as usize].increment(1);
        metrics.duration.record(elapsed.as_secs_f64());
        if !self.span.is_disabled() {
            self.span
                .record("outcome", field::display(outcome.as_str()));
            self.span.record("duration_ms", elapsed.as_secs_f64() * 1e3);
        }
    }
}

impl Drop for Observed {
    /// A call dropped before it ended (its caller gave up on it) leaves the
    /// in-flight gauge without being counted as ended.
    fn drop(&mut self) {
        if !self.ended {
            self.site.metrics().in_flight.decrement(1.0);
        }
    }
}
