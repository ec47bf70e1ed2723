//! The Fibonacci service of the RabbitMQ RPC tutorial, typed.
//!
//! `fib_server` serves [`Fibonacci`] on queue `rpc_queue`; `fib_client N...`
//! calls it. Both read the broker's address from `AMQP_URL`.

use rpc_runtime::rpc_service;
use serde::{Deserialize, Serialize};

/// The broker address used when `AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker address: `AMQP_URL`, or [`DEFAULT_AMQP_URL`].
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// The examples' log filter: `RUST_LOG` if set, otherwise `default` with
/// lapin's own logs off (`warn,lapin=off` for `default = "warn"`).
///
/// The framework reports what happens to connections, calls and requests
/// once, in its own words; lapin, underneath, logs some of the same events
/// again from its internals, and warns with the whole body of every request
/// the broker returns. Applications do the same with
/// `RUST_LOG=info,lapin=off` or `EnvFilter::new("info,lapin=off")`.
///
/// ```
/// let filter = rpc_examples::log_filter("info");
/// # let _ = filter;
/// ```
pub fn log_filter(default: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("{default},lapin=off")))
}

/// Bucket bounds, in seconds, of the framework's duration histograms
/// (`rpc_client_call_duration_seconds`, `rpc_server_handler_duration_seconds`):
/// 100 µs to 10 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A Prometheus exporter as the examples install it: histograms with
/// [`DURATION_BUCKETS`] rather than the exporter's default summaries.
/// Buckets add up across servers (a summary's quantiles do not: one queue's
/// latency over many servers needs histograms), and each sample costs a
/// bucket count instead of an insertion into a rolling quantile sketch
/// (about 1,100 instructions a sample less, measured with callgrind).
///
/// ```
/// let recorder = rpc_examples::prometheus().build_recorder();
/// # let _ = recorder;
/// ```
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusBuilder {
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    // Only an empty list is refused.
    match builder.set_buckets(DURATION_BUCKETS) {
        Ok(builder) => builder,
        Err(_) => metrics_exporter_prometheus::PrometheusBuilder::new(),
    }
}

/// Why a Fibonacci number cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FibError {
    /// The result does not fit in a `u64` (n > 93).
    #[error("fib({n}) overflows u64: the largest n is 93")]
    Overflow {
        /// The argument.
        n: u32,
    },
}

/// The RPC tutorial's service.
#[rpc_service(queue = "rpc_queue")]
pub trait Fibonacci {
    /// The n-th Fibonacci number; n > 93 overflows u64 and is an error.
    async fn fib(&self, n: u32) -> Result<u64, FibError>;
}

/// Computes Fibonacci numbers iteratively, in O(n) additions.
#[derive(Debug, Clone, Copy, Default)]
pub struct IterativeFib;

impl Fibonacci for IterativeFib {
    async fn fib(&self, n: u32) -> Result<u64, FibError> {
        fib(n)
    }
}

/// The n-th Fibonacci number (`fib(0) = 0`, `fib(1) = 1`), or an overflow.
///
/// ```
/// use rpc_examples::{fib, FibError};
/// assert_eq!(fib(0), Ok(0));
/// assert_eq!(fib(1), Ok(1));
/// assert_eq!(fib(30), Ok(832040));
/// assert_eq!(fib(93), Ok(12200160415121876738));
/// assert_eq!(fib(94), Err(FibError::Overflow { n: 94 }));
/// ```
pub fn fib(n: u32) -> Result<u64, FibError> {
    // (fib(i - 1), fib(i)), from fib(-1) = 1 and fib(0) = 0: the additions
    // never go past fib(n), so fib(93) fits and fib(94) is the overflow.
    let (mut previous, mut current) = (1u64, 0u64);
    for _ in 0..n {
        let next = previous
            .checked_add(current)
            .ok_or(FibError::Overflow { n })?;
        (previous, current) = (current, next);
    }
    Ok(current)
}

/// The README's example, compiled as a doc test so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
