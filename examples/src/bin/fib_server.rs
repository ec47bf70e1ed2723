//! Serves the Fibonacci service on queue `rpc_queue` until Ctrl-C (or
//! SIGTERM), then shuts down gracefully: the requests in flight get their
//! replies, those not started go back to the queue.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p rpc-examples --bin fib_server
//! cargo run -p rpc-examples --bin fib_server -- --queue fib_test
//! ```
//!
//! The runtime has one worker per core unless `TOKIO_WORKER_THREADS` says
//! otherwise; on a small machine that also runs the broker, `1` serves more
//! calls per second (docs/BENCHMARKS.md, "Worker threads").

use rpc_examples::{FibonacciServer, IterativeFib, amqp_url, log_filter};
use rpc_runtime::{Connection, Server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter("info"))
        .with_writer(std::io::stderr)
        .init();
    // Errors name the broker with its password redacted.
    let connection = Connection::builder(amqp_url())
        .name("fib_server")
        .connect()
        .await?;
    let mut builder = Server::builder();
    match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => {}
        [flag, queue] if flag == "--queue" => builder = builder.queue(queue),
        _ => anyhow::bail!("usage: fib_server [--queue NAME]"),
    }
    let server = builder
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await?;
    println!(" [x] Awaiting RPC requests on queue `{}`", server.queue());
    rpc_runtime::shutdown_on_signal([server]).await?;
    println!(" [x] Shut down");
    connection.close().await;
    Ok(())
}
