//! What every peer serves: `fib(n)` and `echo(payload)` with a ~100-byte
//! struct, over the same wire format.

use rpc_examples::{FibError, fib};
use rpc_runtime::{Call, Client, Fallible, Plain};
use serde::{Deserialize, Serialize};
use std::sync::LazyLock;

/// A record of about 100 bytes once encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Payload {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    pub(crate) score: f64,
    pub(crate) active: bool,
}

impl Payload {
    pub(crate) fn sample(id: u64) -> Self {
        Self {
            id,
            name: "a benchmark record of moderate length".to_owned(),
            tags: vec!["alpha".to_owned(), "beta".to_owned(), "gamma".to_owned()],
            score: 0.75,
            active: true,
        }
    }
}

/// The benchmark service, once per generated client: the framework keeps
/// each client method's metrics handles in a `static` of the generated code,
/// registered at its first call, so the `observed` peer (whose handles go to
/// its own recorder) needs a client of its own, generated from a trait of its
/// own with the same methods and implementation. Both framework peers serve
/// `BenchServer`, so that their servers run the same code.
macro_rules! bench_service {
    ($(#[$attr:meta])* $module:ident: $service:ident, $client:ident $(, $server:ident)?) => {
        // Expanded here, the generated code's unused items (`DEFAULT_QUEUE`,
        // `get_ref`, `ObservedBenchServer`, ...) would be warned about.
        #[allow(dead_code)]
        mod $module {
            use super::{BenchImpl, FibError, Generated, Payload, fib};
            use rpc_runtime::{Call, Client, Fallible, Plain};

            $(#[$attr])*
            #[rpc_runtime::rpc_service(queue = "bench")]
            pub(crate) trait $service {
                /// The n-th Fibonacci number.
                async fn fib(&self, n: u32) -> Result<u64, FibError>;
                /// Returns its argument.
                async fn echo(&self, payload: Payload) -> Payload;
            }

            impl $service for BenchImpl {
                async fn fib(&self, n: u32) -> Result<u64, FibError> {
                    fib(n)
                }

                async fn echo(&self, payload: Payload) -> Payload {
                    payload
                }
            }

            impl Generated for $client {
                fn new(client: Client, queue: &str) -> Self {
                    $client::new(client).with_queue(queue)
                }

                fn fib(&self, n: u32) -> Call<Fallible<u64, FibError>> {
                    $client::fib(self, n)
                }

                fn echo(&self, payload: Payload) -> Call<Plain<Payload>> {
                    $client::echo(self, payload)
                }
            }
        }

        pub(crate) use $module::{$client $(, $server)?};
    };
}

/// A generated client of the benchmark service, whichever trait it was
/// generated from.
pub(crate) trait Generated: Send + Sync + 'static {
    fn new(client: Client, queue: &str) -> Self;
    fn fib(&self, n: u32) -> Call<Fallible<u64, FibError>>;
    fn echo(&self, payload: Payload) -> Call<Plain<Payload>>;
}

/// The framework's implementation, of both traits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BenchImpl;

bench_service!(
    /// The benchmark service, as peer `framework` calls it and both
    /// framework peers serve it.
    plain: Bench, BenchClient, BenchServer
);

bench_service!(
    /// The same service, as peer `observed` calls it.
    observed: ObservedBench, ObservedBenchClient
);

/// Whether the framework's clients publish their requests with publisher
/// confirms: yes, unless `BENCH_CONFIRMS=off` (its
/// `publisher_confirms(false)`).
pub(crate) fn confirms() -> bool {
    confirms_setting() != "off"
}

/// Whether the raw peers' clients publish with publisher confirms (and wait
/// for them before the reply): yes, unless `BENCH_CONFIRMS=off`, which
/// measures every pair as the RabbitMQ tutorial's are written (a request to
/// a missing queue then goes unnoticed by the raw peers), or
/// `BENCH_CONFIRMS=raw-off`, which keeps the framework's defaults against
/// raw pairs without them: issue 16's goal, in one interleaved run.
pub(crate) fn raw_confirms() -> bool {
    !matches!(confirms_setting().as_str(), "off" | "raw-off")
}

fn confirms_setting() -> String {
    std::env::var("BENCH_CONFIRMS").unwrap_or_default()
}

/// Whether the raw peers' requests carry a per-message `expiration` (30 s,
/// as the framework's carry their timeout): yes, unless
/// `BENCH_EXPIRATION=off`, which measures what the property costs the
/// clients, the servers and the broker (issue 16, route 2). The framework
/// always sets it: it is what drops a request no server took in time.
/// Read once: an environment lookup per call (a lock, a scan and a
/// `String`) cost the hand-written clients about 500 instructions a call.
pub(crate) fn expiration() -> bool {
    static EXPIRATION: LazyLock<bool> =
        LazyLock::new(|| std::env::var("BENCH_EXPIRATION").map_or(true, |value| value != "off"));
    *EXPIRATION
}

/// The argument of the `fib` calls: small, so that the framework and the
/// broker dominate.
pub(crate) const FIB_N: u32 = 10;

#[cfg(test)]
mod tests {
    #[test]
    fn the_payload_is_about_100_bytes() {
        let mut body = Vec::new();
        let payload = super::Payload::sample(1);
        payload
            .serialize(&mut rmp_serde::Serializer::new(&mut body).with_struct_map())
            .expect("encode");
        assert!((90..=130).contains(&body.len()), "{}", body.len());
    }
    use serde::Serialize;
}
