//! Trace context across processes: which trace a call belongs to, carried
//! in W3C `traceparent`/`tracestate` headers (PROTOCOL.md §2).
//!
//! - A call continues the caller's current trace: with the `opentelemetry`
//!   feature and a `tracing-opentelemetry` layer installed, the OpenTelemetry
//!   context of the call's span (itself a child of the span the call is made
//!   in); otherwise, the trace of the request whose handler makes the call
//!   ([`RequestContext`]); otherwise a new trace.
//! - A server continues the caller's trace: its request span is the child of
//!   the caller's span (with the feature, as the OpenTelemetry parent of the
//!   request span), and calls its handler makes continue it in turn.
//!
//! Without the feature, the ids are still propagated, and recorded on the
//! spans (`trace_id`, `span_id`, `parent_id`) so that logs carry them.

use crate::{protocol::headers::TraceParent, server::context::RequestContext};
use std::fmt;

/// The sampled flag of a `traceparent`.
const SAMPLED: u8 = 0x01;

/// Where a span stands in its trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceIds {
    pub(crate) trace_id: u128,
    /// This span's own id: the parent of what it calls.
    pub(crate) span_id: u64,
    pub(crate) flags: u8,
    pub(crate) tracestate: Option<String>,
}

impl TraceIds {
    /// The `traceparent` that makes a receiver this span's child.
    pub(crate) fn traceparent(&self) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            span_id: self.span_id,
            flags: self.flags,
        }
    }

    /// A new span in the trace of `parent`.
    fn child_of(parent: &TraceParent, tracestate: Option<String>) -> Self {
        Self {
            trace_id: parent.trace_id,
            span_id: new_span_id(),
            flags: parent.flags,
            tracestate,
        }
    }

    /// The first span of a new trace.
    fn root() -> Self {
        Self {
            trace_id: loop {
                let id = fastrand::u128(..);
                if id != 0 {
                    break id;
                }
            },
            span_id: new_span_id(),
            flags: SAMPLED,
            tracestate: None,
        }
    }
}

fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

/// `trace_id` as 32 hex digits, for span fields and logs.
pub(crate) struct TraceId(pub(crate) u128);

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// A span id as 16 hex digits.
pub(crate) struct SpanId(pub(crate) u64);

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What a call's trace continues, taken where the call is made: a call
/// made in a handler may be awaited in a task of its own, where neither the
/// handler's context (a task-local) nor its span is current.
#[derive(Debug, Default)]
pub(crate) struct Origin {
    /// The trace of the request whose handler makes the call.
    handler: Option<TraceIds>,
    /// The span the call is made in, when the call's own span is left out
    /// by the subscriber's filter (the default level is DEBUG) and so has no
    /// OpenTelemetry context: the server's parent is then this one.
    #[cfg(feature = "opentelemetry")]
    current: Option<tracing::Span>,
}

impl Origin {
    /// Where a call whose span is `span` is being made.
    pub(crate) fn here(span: &tracing::Span) -> Self {
        let _ = span;
        Self {
            handler: RequestContext::current_trace(),
            #[cfg(feature = "opentelemetry")]
            current: span.is_disabled().then(tracing::Span::current),
        }
    }
}

/// The trace context of a call made at `origin` in `span` (the call's own
/// span).
pub(crate) fn outgoing(span: &tracing::Span, origin: Origin) -> TraceIds {
    #[cfg(feature = "opentelemetry")]
    if let Some(ids) = otel::ids_of(origin.current.as_ref().unwrap_or(span)) {
        return ids;
    }
    let _ = span;
    match origin.handler {
        Some(handler) => TraceIds::child_of(&handler.traceparent(), handler.tracestate),
        None => TraceIds::root(),
    }
}

/// The trace context of a request that arrived with `traceparent` (if any,
/// and valid) and `tracestate`: a child of the caller's span, or the first
/// span of a new trace. With the feature, `span` (the request's) becomes the
/// OpenTelemetry child of the caller's span, and the ids are its own.
pub(crate) fn incoming(
    span: &tracing::Span,
    traceparent: Option<&TraceParent>,
    tracestate: Option<String>,
) -> TraceIds {
    #[cfg(feature = "opentelemetry")]
    if let Some(ids) = otel::continue_in(span, traceparent, tracestate.as_deref()) {
        return ids;
    }
    let _ = span;
    match traceparent {
        Some(parent) => TraceIds::child_of(parent, tracestate),
        None => TraceIds::root(),
    }
}

#[cfg(feature = "opentelemetry")]
mod otel {
    //! The OpenTelemetry context of `tracing` spans, through
    //! `tracing-opentelemetry`: present only when the application installed
    //! its layer (otherwise the span's context is not valid, and the ids are
    //! this crate's own).

    use super::TraceIds;
    use crate::protocol::headers::TraceParent;
    use opentelemetry::{
        Context,
        trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState},
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// The ids of `span`'s OpenTelemetry span, if it has one.
    pub(super) fn ids_of(span: &tracing::Span) -> Option<TraceIds> {
        let context = span.context();
        let span_context = context.span().span_context().clone();
        if !span_context.is_valid() {
            return None;
        }
        let tracestate = span_context.trace_state().header();
        Some(TraceIds {
            trace_id: u128::from_be_bytes(span_context.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(span_context.span_id().to_bytes()),
            flags: span_context.trace_flags().to_u8(),
            tracestate: (!tracestate.is_empty()).then_some(tracestate),
        })
    }

    /// Makes `span` the child of the caller's span, and returns its ids.
    pub(super) fn continue_in(
        span: &tracing::Span,
        traceparent: Option<&TraceParent>,
        tracestate: Option<&str>,
    ) -> Option<TraceIds> {
        if let Some(parent) = traceparent {
            let state = tracestate
                .and_then(|state| state.parse::<TraceState>().ok())
                .unwrap_or_default();
            let remote = SpanContext::new(
                TraceId::from_bytes(parent.trace_id.to_be_bytes()),
                SpanId::from_bytes(parent.span_id.to_be_bytes()),
                TraceFlags::new(parent.flags),
                true,
                state,
            );
            // Without the layer, there is nothing to set: the ids are then
            // this crate's own.
            span.set_parent(Context::new().with_remote_span_context(remote))
                .ok()?;
        }
        ids_of(span)
    }
}
