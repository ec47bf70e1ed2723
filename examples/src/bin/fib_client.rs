//! Calls the Fibonacci service for each N on the command line and prints one
//! line per call: `fib(30) = 832040` on stdout, or `fib(94) failed: ...` on
//! stderr.
//!
//! ```text
//! cargo run -p rpc-examples --bin fib_client -- 30 93 94
//! cargo run -p rpc-examples --bin fib_client -- --timeout 5s --require-server 30
//! ```
//!
//! Options: `--timeout DURATION` (`500ms`, `5s`, `2m`, `1h`, or seconds; default
//! 30 s), `--queue NAME` (default `rpc_queue`), `--require-server` (fail at
//! once when no server consumes the queue, instead of letting the request
//! wait there for one).
//!
//! Exits with status 1 if any call failed (at the first failure that is not
//! the service's own error, such as no server listening), and with status 2
//! on bad usage.

use rpc_examples::{FibonacciClient, amqp_url, log_filter};
use rpc_runtime::{CallError, Client, Connection};
use std::{process::ExitCode, time::Duration};

const USAGE: &str = "usage: fib_client [--timeout DURATION] [--queue NAME] [--require-server] N...";
const OPTIONS: &str = "Calls fib(N) on the Fibonacci service for each N; the broker is AMQP_URL.
  --timeout DURATION  how long each call waits for its reply: 500ms, 5s, 2m, 1h or
                      seconds (default 30s)
  --queue NAME        the service's request queue (default rpc_queue)
  --require-server    fail at once when no server consumes the queue, instead of
                      letting the request wait there for one";

struct Options {
    numbers: Vec<u32>,
    timeout: Duration,
    queue: Option<String>,
    require_server: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter("warn"))
        .with_writer(std::io::stderr)
        .init();
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}\n\n{OPTIONS}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The error says which broker, with the password redacted.
    let connection = match Connection::builder(amqp_url())
        .name("fib_client")
        .connect()
        .await
    {
        Ok(connection) => connection,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let client = match Client::builder()
        .timeout(options.timeout)
        .require_server(options.require_server)
        .build(&connection)
        .await
    {
        Ok(client) => FibonacciClient::new(client),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let client = match &options.queue {
        Some(queue) => client.with_queue(queue),
        None => client,
    };

    let mut failed = false;
    for n in options.numbers {
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
                return ExitCode::FAILURE;
            }
        }
    }
    connection.close().await;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut options = Options {
        numbers: Vec::new(),
        timeout: rpc_runtime::DEFAULT_TIMEOUT,
        queue: None,
        require_server: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--timeout" => {
                let value = args.next().ok_or("--timeout needs a duration")?;
                options.timeout = parse_duration(&value)?;
            }
            "--queue" => options.queue = Some(args.next().ok_or("--queue needs a name")?),
            "--require-server" => options.require_server = true,
            "-h" | "--help" => return Err(String::new()),
            number => match number.parse::<u32>() {
                Ok(n) => options.numbers.push(n),
                Err(_) => return Err(format!("`{number}` is not a non-negative integer")),
            },
        }
    }
    if options.numbers.is_empty() {
        return Err("no N given".to_owned());
    }
    Ok(options)
}

/// `500ms`, `5s`, `2m`, `1h`, or a number of seconds (`1.5`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || format!("`{text}` is not a duration (500ms, 5s, 2m, 1h, or seconds)");
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_or_without_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "-1s", "5d", "five", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
