//! What both peers serve: `fib(n)` and `echo(payload)` with a ~100-byte
//! struct, over the same wire format.

use rpc_examples::{FibError, fib};
use rpc_runtime::rpc_service;
use serde::{Deserialize, Serialize};

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

/// The benchmark service, as the framework serves it.
#[rpc_service(queue = "bench")]
pub(crate) trait Bench {
    /// The n-th Fibonacci number.
    async fn fib(&self, n: u32) -> Result<u64, FibError>;
    /// Returns its argument.
    async fn echo(&self, payload: Payload) -> Payload;
}

/// The framework's implementation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BenchImpl;

impl Bench for BenchImpl {
    async fn fib(&self, n: u32) -> Result<u64, FibError> {
        fib(n)
    }

    async fn echo(&self, payload: Payload) -> Payload {
        payload
    }
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
