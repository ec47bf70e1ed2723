//! The level of the framework's own spans (`rpc.call`, `rpc.request`), and
//! how a span is made at a level chosen at run time.
//!
//! They are at DEBUG unless a builder says otherwise
//! ([`ClientBuilder::span_level`](crate::ClientBuilder::span_level),
//! [`ServerBuilder::span_level`](crate::ServerBuilder::span_level)), as
//! `tower-http`'s request spans are: a span that a subscriber records costs
//! far more than the rest of a call's bookkeeping (measured with a `fmt`
//! subscriber: about 11 us of CPU per call on each side, 12 to 15% of the calls per
//! second; docs/BENCHMARKS.md), while one its filter leaves out costs a
//! level check. Applications that want them (their handlers' logs then carry
//! each request's fields, and an OpenTelemetry layer exports them) enable
//! `rpc_runtime=debug` for the layer that should see them, or raise the
//! level.
//!
//! Trace context does not depend on them: ids are propagated whether or not
//! a span records them.

/// The level of the framework's spans when a builder does not set one.
pub const DEFAULT_SPAN_LEVEL: tracing::Level = tracing::Level::DEBUG;

/// `tracing::span!` at `$level`, a `tracing::Level` known only at run time
/// (a span's level is part of its static callsite, so there is one per
/// level).
macro_rules! span_at {
    ($level:expr, target: $target:expr, $($span:tt)+) => {
        match $level {
            ::tracing::Level::ERROR => ::tracing::span!(target: $target, ::tracing::Level::ERROR, $($span)+),
            ::tracing::Level::WARN => ::tracing::span!(target: $target, ::tracing::Level::WARN, $($span)+),
            ::tracing::Level::INFO => ::tracing::span!(target: $target, ::tracing::Level::INFO, $($span)+),
            ::tracing::Level::DEBUG => ::tracing::span!(target: $target, ::tracing::Level::DEBUG, $($span)+),
            ::tracing::Level::TRACE => ::tracing::span!(target: $target, ::tracing::Level::TRACE, $($span)+),
        }
    };
}
pub(crate) use span_at;
