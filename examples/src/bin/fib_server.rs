//! Serves the Fibonacci service on queue `rpc_queue` until Ctrl-C (or
//! SIGTERM), then shuts down gracefully: the requests in flight get their
//! replies, those not started go back to the queue.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p rpc-examples --bin fib_server
//! cargo run -p rpc-examples --bin fib_server -- --queue fib_test
//! cargo run -p rpc-examples --bin fib_server -- --metrics 127.0.0.1:9464
//! ```
//!
//! Options: `--queue NAME` (default `rpc_queue`); `--metrics ADDR` serves
//! the framework's metrics (`rpc_server_*`, see the README) for Prometheus
//! at `http://ADDR/metrics`; `--help` lists them.
//!
//! The runtime has one worker per core unless `TOKIO_WORKER_THREADS` says
//! otherwise; on a small machine that also runs the broker, `1` serves more
//! calls per second (docs/BENCHMARKS.md, "Worker threads").

use anyhow::Context;
use rpc_examples::{FibonacciServer, IterativeFib, amqp_url, log_filter};
use rpc_runtime::{Connection, Server};
use std::net::SocketAddr;

const USAGE: &str = "usage: fib_server [--queue NAME] [--metrics ADDR]";
const OPTIONS: &str =
    "Serves the Fibonacci service until Ctrl-C or SIGTERM; the broker is AMQP_URL.
  --queue NAME    the request queue to serve (default rpc_queue)
  --metrics ADDR  serve the metrics for Prometheus at http://ADDR/metrics";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut builder = Server::builder();
    let mut metrics: Option<SocketAddr> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}\n\n{OPTIONS}");
                return Ok(());
            }
            "--queue" => {
                let queue = args
                    .next()
                    .with_context(|| format!("--queue needs a name; {USAGE}"))?;
                builder = builder.queue(queue);
            }
            "--metrics" => {
                let addr = args
                    .next()
                    .with_context(|| format!("--metrics needs an address; {USAGE}"))?;
                metrics = Some(addr.parse().with_context(|| format!("`{addr}`: {USAGE}"))?);
            }
            other => anyhow::bail!("unknown option `{other}`; {USAGE}"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(log_filter("info"))
        .with_writer(std::io::stderr)
        .init();
    // Before anything is served: metrics handles are registered as servers
    // and clients start.
    if let Some(addr) = metrics {
        rpc_examples::prometheus()
            .with_http_listener(addr)
            .install()
            .with_context(|| format!("cannot serve metrics at {addr}"))?;
        println!(" [x] Metrics at http://{addr}/metrics");
    }
    // Errors name the broker with its password redacted.
    let connection = Connection::builder(amqp_url())
        .name("fib_server")
        .connect()
        .await?;
    let server = builder
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await?;
    println!(" [x] Awaiting RPC requests on queue `{}`", server.queue());
    rpc_runtime::shutdown_on_signal([server]).await?;
    println!(" [x] Shut down");
    connection.close().await;
    Ok(())
}
