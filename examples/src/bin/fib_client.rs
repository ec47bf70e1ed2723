//! Calls the Fibonacci service for each N on the command line and prints one
//! line per call: `fib(30) = 832040` on stdout, or `fib(94) failed: ...` on
//! stderr.
//!
//! ```text
//! cargo run -p rpc-examples --bin fib_client -- 30 93 94
//! ```
//!
//! Exits with status 1 if any call failed (at the first failure that is not
//! the service's own error, such as no server listening), and with status 2
//! on bad usage.

use anyhow::Context;
use rpc_examples::{FibonacciClient, amqp_url};
use rpc_runtime::{CallError, Client, Connection, redact_url};
use std::process::ExitCode;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut numbers = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.parse::<u32>() {
            Ok(n) => numbers.push(n),
            Err(_) => {
                eprintln!("usage: fib_client N... (non-negative integers); `{arg}` is not one");
                return Ok(ExitCode::from(2));
            }
        }
    }
    if numbers.is_empty() {
        eprintln!("usage: fib_client N... (non-negative integers)");
        return Ok(ExitCode::from(2));
    }

    let url = amqp_url();
    let connection = Connection::builder(&url)
        .name("fib_client")
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", redact_url(&url)))?;
    let client = FibonacciClient::new(Client::new(&connection).await?);

    let mut failed = false;
    for n in numbers {
        match client.fib(n).await {
            Ok(value) => println!("fib({n}) = {value}"),
            // The service's own answer: report it and go on.
            Err(CallError::App(error)) => {
                failed = true;
                eprintln!("fib({n}) failed: {error}");
            }
            // The call itself failed (no server, timeout, ...): the next
            // ones would too.
            Err(CallError::Rpc(error)) => {
                eprintln!("error: fib({n}): {error}");
                connection.close().await;
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    connection.close().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
