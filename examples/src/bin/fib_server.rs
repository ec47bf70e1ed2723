//! Serves the Fibonacci service on queue `rpc_queue` until Ctrl-C (or
//! SIGTERM), then shuts down gracefully.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run -p rpc-examples --bin fib_server
//! ```
//!
//! The runtime has one worker per core unless `TOKIO_WORKER_THREADS` says
//! otherwise; on a small machine that also runs the broker, `1` serves more
//! calls per second (docs/BENCHMARKS.md, "Worker threads").

use anyhow::Context;
use rpc_examples::{FibonacciServer, IterativeFib, amqp_url};
use rpc_runtime::{Connection, Server, redact_url};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let url = amqp_url();
    let connection = Connection::builder(&url)
        .name("fib_server")
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", redact_url(&url)))?;
    let server = Server::serve(&connection, FibonacciServer::new(IterativeFib)).await?;
    println!(" [x] Awaiting RPC requests on queue `{}`", server.queue());
    wait_for_signal().await?;
    println!(" [x] Shutting down");
    server.shutdown().await;
    connection.close().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
