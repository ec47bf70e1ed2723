//! `fib_client` and `fib_server` as a user runs them: what they print when
//! things go wrong (once, in the framework's words, without lapin's
//! internals, message bodies or passwords), `--timeout`, `--require-server`,
//! a graceful stop on SIGTERM, and `--help` (`bench`'s too).
//!
//! Against the broker at `AMQP_URL`, on queues of their own, deleted after.

use rpc_examples::amqp_url;
use rpc_runtime::lapin::{
    self, ConnectionProperties,
    options::{QueueDeclareOptions, QueueDeleteOptions},
    types::FieldTable,
};
use std::{process::Output, time::Duration};
use tokio::io::{AsyncBufReadExt, BufReader};

const CLIENT: &str = env!("CARGO_BIN_EXE_fib_client");
const SERVER: &str = env!("CARGO_BIN_EXE_fib_server");
const BENCH: &str = env!("CARGO_BIN_EXE_bench");
/// A guard against hanging, not a timing bound.
const PATIENCE: Duration = Duration::from_secs(60);

/// A durable queue nobody consumes (as a stopped server leaves its queue),
/// deleted when dropped.
struct Queue {
    name: String,
}

impl Queue {
    async fn declare() -> Self {
        let name = format!("rpc-test.fib-cli.{}", uuid::Uuid::new_v4().simple());
        let (connection, channel) = open().await;
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(name.as_str().into(), durable, FieldTable::default())
            .await
            .expect("declare");
        let _ = connection.close(200, "done".into()).await;
        Self { name }
    }

    /// A name no queue has.
    fn missing() -> Self {
        Self {
            name: format!("rpc-test.fib-cli.missing.{}", uuid::Uuid::new_v4().simple()),
        }
    }

    async fn consumers(&self) -> u32 {
        let (connection, channel) = open().await;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let queue = channel
            .queue_declare(self.name.as_str().into(), passive, FieldTable::default())
            .await
            .expect("passive declare");
        let _ = connection.close(200, "done".into()).await;
        queue.consumer_count()
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let (connection, channel) = open().await;
                let _ = channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = connection.close(200, "done".into()).await;
            });
        })
        .join();
    }
}

async fn open() -> (lapin::Connection, lapin::Channel) {
    let connection = lapin::Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("the broker must be reachable at AMQP_URL (run scripts/test.sh)");
    let channel = connection.create_channel().await.expect("channel");
    (connection, channel)
}

/// Runs `fib_client` with `args`, with `url` as `AMQP_URL` and the default
/// log filter (no `RUST_LOG`).
async fn fib_client(url: &str, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(CLIENT)
        .args(args)
        .env("AMQP_URL", url)
        .env_remove("RUST_LOG")
        .output();
    tokio::time::timeout(PATIENCE, run)
        .await
        .expect("fib_client finished")
        .expect("fib_client ran")
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Failed with exit status 1 and said so in exactly one line, which
/// contains `expected`.
fn assert_one_error_line(output: &Output, expected: &str) {
    let lines = stderr_lines(output);
    assert_eq!(output.status.code(), Some(1), "{lines:#?}");
    assert_eq!(
        lines.len(),
        1,
        "one line, in the framework's words: {lines:#?}"
    );
    assert!(lines[0].contains(expected), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_without_a_server_times_out_saying_so() {
    let queue = Queue::declare().await;
    // 8 s: at its timeout the client asks the broker for the queue's
    // consumers (opening a channel for it, then a passive declare), and
    // waits a tenth of the timeout at most for the answer, 800 ms. With
    // 500 ms (50 ms to answer), and then with 2 s (200 ms), the broker did
    // not always answer in time while other tests loaded it (CI runs the
    // cluster scenarios beside), and the message then had no count.
    let output = fib_client(
        &amqp_url(),
        &["--queue", &queue.name, "--timeout", "8s", "30"],
    )
    .await;
    assert_one_error_line(&output, &format!("no server is consuming `{}`", queue.name));

    // --require-server: at once, whatever the timeout.
    let output = fib_client(
        &amqp_url(),
        &[
            "--queue",
            &queue.name,
            "--timeout",
            "1h",
            "--require-server",
            "30",
        ],
    )
    .await;
    assert_one_error_line(&output, "no server is consuming queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_queue_is_one_line_without_the_request_body() {
    let missing = Queue::missing();
    let output = fib_client(&amqp_url(), &["--queue", &missing.name, "30"]).await;
    assert_one_error_line(&output, "no service is listening on queue");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // lapin warns with the returned message, body bytes and all; the
    // examples' filter keeps its logs off.
    assert!(!stderr.contains("BasicReturnMessage"), "{stderr}");
    assert!(!stderr.contains("[145, 30]"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_one_line_and_no_password_shows() {
    let url: lapin::uri::AMQPUri = amqp_url().parse().expect("AMQP_URL parses");
    let (host, port) = (&url.authority.host, url.authority.port);
    let user = &url.authority.userinfo.username;
    let wrong = format!("amqp://{user}:Wr0ngPa55@{host}:{port}/%2f");
    let output = fib_client(&wrong, &["30"]).await;
    assert_one_error_line(&output, &format!("amqp://{user}:***@{host}:{port}/%2f"));
    assert!(!stderr_lines(&output)[0].contains("Wr0ngPa55"));

    // URLs that do not parse, as people mistype them: the password shows
    // nowhere (it used to, whole, in two lines).
    for malformed in [
        format!("amqp://{user}:s3cr/etPW@{host}:{port}/%2f"),
        format!("amqp://{user}:s3cr#etPW@{host}:{port}/%2f"),
        format!("amqp//{user}:s3cretPW@{host}:{port}/%2f"),
        format!("amqp://{user}:s3cretPW"),
    ] {
        let output = fib_client(&malformed, &["30"]).await;
        assert_one_error_line(&output, "error:");
        let everything = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !everything.contains("s3cr") && !everything.contains("etPW"),
            "{everything}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fib_server_answers_then_stops_gracefully_on_sigterm() {
    let queue = Queue::declare().await;
    let mut server = tokio::process::Command::new(SERVER)
        .args(["--queue", &queue.name])
        .env("AMQP_URL", amqp_url())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn fib_server");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("fib_server started")
        .expect("read")
        .expect("a line");
    assert!(first.contains("Awaiting RPC requests"), "{first}");

    let output = fib_client(&amqp_url(), &["--queue", &queue.name, "30", "93"]).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "fib(30) = 832040\nfib(93) = 12200160415121876738\n"
    );

    let pid = server.id().expect("running");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(PATIENCE, server.wait())
        .await
        .expect("fib_server stopped")
        .expect("wait");
    assert!(status.success(), "{status:?}");
    let last = lines.next_line().await.expect("read");
    assert_eq!(last.as_deref(), Some(" [x] Shut down"));
    assert_eq!(queue.consumers().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fib_server_serves_its_metrics_for_prometheus() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let queue = Queue::declare().await;
    // The port is free when drawn, but let go before fib_server binds it:
    // a process that listens on an ephemeral port meanwhile (an Erlang node
    // of a test running beside, say) can take it, and fib_server then exits
    // with "cannot serve metrics". Tried again with another port.
    let mut tries = 0;
    // Its stdout is kept open (it prints each request) and read no more.
    let (mut server, _stdout, addr) = loop {
        tries += 1;
        let addr = {
            let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            free.local_addr().expect("addr")
        };
        let mut server = tokio::process::Command::new(SERVER)
            .args(["--queue", &queue.name, "--metrics", &addr.to_string()])
            .env("AMQP_URL", amqp_url())
            .env_remove("RUST_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fib_server");
        let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
        let started = loop {
            match tokio::time::timeout(PATIENCE, lines.next_line())
                .await
                .expect("fib_server started")
                .expect("read")
            {
                Some(line) if line.contains("Awaiting RPC requests") => break true,
                Some(_) => {}
                None => break false,
            }
        };
        if started {
            break (server, lines, addr);
        }
        let output = server
            .wait_with_output()
            .await
            .expect("fib_server's output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("cannot serve metrics") && tries < 5,
            "fib_server did not start (try {tries}): {stderr}"
        );
    };
    let output = fib_client(&amqp_url(), &["--queue", &queue.name, "30", "94"]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "fib(94) is the service's own error"
    );

    let mut http = tokio::net::TcpStream::connect(addr)
        .await
        .expect("the metrics endpoint");
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, http.read_to_string(&mut response))
        .await
        .expect("a response")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let sample = |outcome: &str| {
        response
            .lines()
            .find(|line| {
                line.starts_with("rpc_server_requests_total{")
                    && line.contains("service=\"Fibonacci\"")
                    && line.contains("method=\"fib\"")
                    && line.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    assert_eq!(sample("ok"), Some(1.0), "{response}");
    assert_eq!(sample("error"), Some(1.0), "{response}");
    assert!(
        response.contains("rpc_server_handler_duration_seconds"),
        "{response}"
    );
    let _ = server.start_kill();
}

/// Runs `program` with `args`, without a broker (usage needs none).
async fn run(program: &str, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(program).args(args).output();
    tokio::time::timeout(PATIENCE, run)
        .await
        .expect("finished")
        .expect("ran")
}

/// `-h` and `--help` print the usage on stdout and exit 0 (`fib_server`
/// and `bench` used to fail with it as an error); an unknown option is
/// still an error, with the usage on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_prints_usage_and_unknown_options_fail() {
    let programs = [
        (SERVER, "fib_server", "--metrics ADDR"),
        (CLIENT, "fib_client", "--require-server"),
        (BENCH, "bench", "--in-flight LIST"),
    ];
    for (program, name, option) in programs {
        for help in ["--help", "-h"] {
            let output = run(program, &[help]).await;
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(output.status.success(), "{name} {help}: {output:?}");
            assert!(stdout.starts_with(&format!("usage: {name} ")), "{stdout}");
            assert!(stdout.contains(option), "{name} {help}: {stdout}");
            assert!(output.stderr.is_empty(), "{name} {help}: {output:?}");
        }
        let output = run(program, &["--no-such-option"]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}: {output:?}");
        assert!(
            stderr.contains(&format!("usage: {name} ")),
            "{name}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{name}: {output:?}");
    }
}
