//! Serves the test service `Lab` in a process of its own, for tests that kill
//! a server or measure a client alone.
//!
//! usage: `lab_server AMQP_URL QUEUE NAME [PREFETCH] [--quorum]
//! [--delivery-limit N] [--dead-letter-queue QUEUE]`
//!
//! Prints `serving` once consuming, and `started TAG` whenever a `hold` call
//! starts; `hold` calls never finish (the test kills the process).

use rpc_tests::{LabControl, lab_server};
use std::io::Write;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: lab_server AMQP_URL QUEUE NAME [PREFETCH] [--quorum] \
                 [--delivery-limit N] [--dead-letter-queue QUEUE]";
    let url = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let queue = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let name = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
    let mut builder = rpc_runtime::Server::builder().queue(&queue).prefetch(32);
    while let Some(arg) = args.next() {
        builder = match arg.as_str() {
            "--quorum" => builder.queue_type(rpc_runtime::QueueType::Quorum),
            "--delivery-limit" => {
                let limit = args.next().ok_or_else(|| anyhow::anyhow!(usage))?;
                builder.delivery_limit(limit.parse()?)
            }
            "--dead-letter-queue" => {
                builder.dead_letter_queue(args.next().ok_or_else(|| anyhow::anyhow!(usage))?)
            }
            prefetch => builder.prefetch(prefetch.parse()?),
        };
    }

    let connection = rpc_runtime::Connection::connect(&url).await?;
    let control = LabControl::default();
    let server = builder
        .serve(&connection, lab_server(name, &control))
        .await?;
    println!("serving");
    std::io::stdout().flush()?;
    while let Some(tag) = control.wait_started().await {
        println!("started {tag}");
        std::io::stdout().flush()?;
    }
    server.shutdown().await;
    Ok(())
}
