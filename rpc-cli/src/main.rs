//! `rpc`: describe, call and load any service built with `#[rpc_service]`,
//! from the shell, with nothing to compile per service (what grpcurl and
//! ghz are for gRPC).
//!
//! ```text
//! rpc describe rpc_queue
//! rpc call rpc_queue fib 30
//! rpc bench rpc_queue fib 20 --in-flight 64 --duration 10s
//! ```
//!
//! The broker is `--url`, else `AMQP_URL`, else the local default. A
//! command first asks the service to describe itself (`rpc.describe`,
//! PROTOCOL.md §10), then converts the JSON arguments by the method's types
//! (`convert.rs`). Exit statuses: `failure.rs`.
//!
//! | module | what it does |
//! |---|---|
//! | `service` | connects, asks for the description, makes a call's arguments |
//! | `convert` | JSON to MessagePack by shape, and back |
//! | `show` | a description as text |
//! | `bench` | the load generator |
//! | `failure` | what failed, and the exit status |

mod bench;
mod convert;
mod failure;
mod service;
mod show;

use clap::{Args, Parser, Subcommand};
use failure::{EXIT_APP_ERROR, EXIT_INTERNAL, EXIT_STATUSES, Failure};
use rpc_runtime::RawReply;
use service::{ArgSource, Target};
use std::{process::ExitCode, time::Duration};

/// The broker when neither `--url` nor `AMQP_URL` says.
const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Describe, call and load services built with `#[rpc_service]`.
#[derive(Debug, Parser)]
#[command(name = "rpc", version, after_help = EXIT_STATUSES)]
struct Cli {
    /// The broker's AMQP URL.
    #[arg(long, env = "AMQP_URL", default_value = DEFAULT_URL, global = true,
          hide_env_values = true, hide_default_value = true)]
    url: String,

    /// How long a call may take (default: 30s), as `500ms`, `10s`, `2m`.
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shows the service on QUEUE: its methods, their arguments, return and
    /// error types and docs, and the types they use.
    Describe {
        /// The service's request queue.
        queue: String,
        /// Prints the description as JSON (PROTOCOL.md §10).
        #[arg(long)]
        json: bool,
        /// Attaches metadata to the question, as many as needed (for a
        /// server whose interceptors want credentials).
        #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
        headers: Vec<String>,
    },
    /// Calls METHOD of the service on QUEUE and prints its result as JSON.
    #[command(allow_negative_numbers = true)]
    Call {
        #[command(flatten)]
        call: CallArgs,
        /// Sends the request without waiting for a reply: the server runs
        /// the method and answers nothing.
        #[arg(long)]
        one_way: bool,
    },
    /// Calls METHOD over and over, N calls in flight, and reports calls/s,
    /// latencies and errors.
    #[command(allow_negative_numbers = true)]
    Bench(bench::BenchArgs),
}

/// What names one call: its queue, method, arguments and headers.
#[derive(Debug, Args)]
struct CallArgs {
    /// The service's request queue.
    queue: String,
    /// The method.
    method: String,
    /// Each argument as a JSON value (`30`, `'"text"'`, `'{"x": 1}'`); a
    /// string argument, or an enum's unit variant, may be written bare
    /// (when the service describes itself).
    #[arg(conflicts_with = "args_array")]
    args: Vec<String>,
    /// All arguments as one JSON array, instead.
    #[arg(long = "args", value_name = "JSON_ARRAY")]
    args_array: Option<String>,
    /// Attaches call metadata, as many as needed.
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
}

impl CallArgs {
    fn source(&self) -> ArgSource {
        match &self.args_array {
            Some(array) => ArgSource::Array(array.clone()),
            None => ArgSource::Words(self.args.clone()),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let workers = match &cli.command {
        Command::Bench(args) => args.workers,
        _ => 1,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    // On a worker, as application code runs, not on the blocked main thread.
    let outcome = runtime.block_on(async move { tokio::spawn(run(cli)).await });
    match outcome {
        Ok(Ok(status)) => ExitCode::from(status),
        Ok(Err(failure)) => {
            eprintln!("error: {failure}");
            if let Some(hint) = failure.hint() {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(failure.exit_status())
        }
        Err(panic) => {
            eprintln!("error: {panic} (a bug in rpc: please report it)");
            ExitCode::from(EXIT_INTERNAL)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Describe {
            queue,
            json,
            headers,
        } => {
            let metadata = service::metadata(&headers)?;
            let target = Target::open(&cli.url, &queue, cli.timeout, true, &metadata).await?;
            let Some(description) = &target.description else {
                return Err(Failure::NotDescribed { queue });
            };
            if json {
                println!(
                    "{}",
                    pretty(&serde_json::to_value(description).unwrap_or_default())
                );
            } else {
                print!("{}", show::description(&queue, description));
            }
            Ok(0)
        }
        Command::Call { call, one_way } => {
            let metadata = service::metadata(&call.headers)?;
            let target = Target::open(&cli.url, &call.queue, cli.timeout, true, &metadata).await?;
            warn_if_undescribed(&target);
            let body = target.encode_args(&call.method, &call.source())?;
            let mut request =
                target
                    .client
                    .call_raw(&target.queue, target.service(), &call.method, body);
            for (name, value) in metadata.iter() {
                request = request.header(name, value);
            }
            if one_way {
                request.one_way().await?;
                eprintln!("sent; a one-way call gets no reply");
                return Ok(0);
            }
            match request.await? {
                RawReply::Ok(value) => {
                    println!("{}", reply_json(&value)?);
                    Ok(0)
                }
                RawReply::Err(value) => {
                    eprintln!("`{}` returned its error:", call.method);
                    println!("{}", reply_json(&value)?);
                    Ok(EXIT_APP_ERROR)
                }
            }
        }
        Command::Bench(args) => {
            let metadata = service::metadata(&args.call.headers)?;
            let target = Target::open(
                &cli.url,
                &args.call.queue,
                cli.timeout,
                args.trace_context,
                &metadata,
            )
            .await?;
            warn_if_undescribed(&target);
            let body = target.encode_args(&args.call.method, &args.call.source())?;
            bench::run(&target, &args, body, metadata).await
        }
    }
}

fn warn_if_undescribed(target: &Target) {
    if target.description.is_none() {
        eprintln!(
            "warning: the service on queue `{}` does not describe itself (a server built before \
             introspection, or with it off): its method and arguments go unchecked, as plain JSON",
            target.queue
        );
    }
}

/// A reply's value as pretty JSON.
fn reply_json(value: &[u8]) -> Result<String, Failure> {
    let value = convert::decode(value).map_err(|message| {
        Failure::Rpc(rpc_runtime::RpcError::Decode {
            method: "reply",
            message,
        })
    })?;
    Ok(pretty(&convert::to_json(&value)))
}

fn pretty(json: &serde_json::Value) -> String {
    serde_json::to_string_pretty(json).unwrap_or_else(|_| json.to_string())
}
