//! Peers `framework` and `observed`: the framework's generated client and
//! server (`observed.rs` adds what the `observed` peer installs around them).

use crate::service::{BenchClient, BenchImpl, BenchServer, FIB_N, Generated, Payload};
use rpc_runtime::{Client, Connection, Server, ServerHandle};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A generated client, with the connection it lives on.
pub(crate) struct FrameworkClient<C = BenchClient> {
    _connection: Connection,
    client: C,
}

impl<C: Generated> FrameworkClient<C> {
    /// `trace_context`: whether calls carry W3C trace context (off for peer
    /// `framework`, on, the default, for `observed`).
    pub(crate) async fn connect(
        url: &str,
        queue: &str,
        trace_context: bool,
    ) -> Result<Self, Error> {
        let connection = Connection::connect(url).await?;
        let client = Client::builder()
            .trace_context(trace_context)
            .publisher_confirms(crate::service::confirms())
            .span_level(span_level())
            .build(&connection)
            .await?;
        Ok(Self {
            _connection: connection,
            client: C::new(client, queue),
        })
    }

    /// The generated client.
    pub(crate) fn generated(&self) -> &C {
        &self.client
    }

    pub(crate) async fn fib(&self) -> Result<u64, Error> {
        Ok(self.client.fib(FIB_N).await?)
    }

    pub(crate) async fn echo(&self, payload: Payload) -> Result<Payload, Error> {
        Ok(self.client.echo(payload).await?)
    }
}

/// Serves the benchmark service on `queue` (both framework peers serve the
/// same `BenchServer`).
pub(crate) async fn serve(url: &str, queue: &str, prefetch: u16) -> Result<ServerHandle, Error> {
    let connection = Connection::connect(url).await?;
    Ok(Server::builder()
        .queue(queue)
        .prefetch(prefetch)
        .span_level(span_level())
        .serve(&connection, BenchServer::new(BenchImpl))
        .await?)
}

/// The level of the framework's spans: `BENCH_SPAN_LEVEL` (`info`, say, to
/// measure spans that peer `observed`'s INFO subscriber records), or the
/// default, DEBUG, which it leaves out.
fn span_level() -> tracing::Level {
    std::env::var("BENCH_SPAN_LEVEL")
        .ok()
        .and_then(|level| level.parse().ok())
        .unwrap_or(rpc_runtime::DEFAULT_SPAN_LEVEL)
}
