//! Throughput of one request queue: how many `echo` calls a second the
//! framework carries through a single RabbitMQ queue, how that moves with
//! the number of server processes, the queue type and a cluster, and what
//! saturates first.
//!
//! ```text
//! cargo build --release -p rpc-tests --bins
//! target/release/scaling            # the full run, about 10 minutes
//! target/release/scaling --smoke    # checks that it works, about 30 s
//! ```
//!
//! Everything runs against private brokers ([`PrivateBroker`], then a
//! 3-node [`Cluster`]), never the machine's own; they are killed when the
//! run ends, fails, panics, or is stopped with Ctrl-C, SIGTERM or SIGHUP.
//!
//! Each measurement is a closed loop on a fresh request queue: `lab_server`
//! processes (prefetch 32) serve it, and client processes (this binary again,
//! in its `client` mode) keep their share of the calls in flight, each caller
//! calling `echo("ping")` again as soon as its reply is back. After a warm-up,
//! the calls completed during a fixed window are counted, with their
//! latencies (a histogram with 2% buckets) and the CPU time used meanwhile by
//! the servers, the clients, the nodes' `beam.smp` (`/proc/PID/stat`), and
//! the rest of the machine (`/proc/stat`). The configurations of a phase run
//! in rounds, interleaved (each round starts at another one); the report
//! gives each configuration's medians over the rounds.
//!
//! What is measured:
//!
//! 1. one node, classic queue: 1, 2 and 4 servers (2 clients, 256 calls in
//!    flight in all);
//! 2. the same with a quorum queue;
//! 3. a 3-node cluster, classic and quorum, 2 servers and 3 clients spread
//!    over the nodes, each connecting with every node's URL, its own first;
//! 4. saturation, classic on one node: 1, 2, 4 servers × 64, 256, 1024 calls
//!    in flight; plus a check that the clients are not the limit (the same
//!    256 calls in flight from 1, 2 or 4 client processes).
//!
//! Options: `--warmup S` (2), `--duration S` (10), `--rounds N` (3),
//! `--no-cluster`, `--markdown PATH` (/tmp/scaling.md), `--smoke` (one round
//! of two short runs on one node). The Markdown report is printed and
//! written to `--markdown`; progress goes to stderr.

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures_util::future::join_all;
use rpc_runtime::{Client, Connection};
use rpc_tests::{Cluster, LabClient, LabServerProcess, private_broker::PrivateBroker};
use std::{
    fmt::{self, Write as _},
    io::Write as _,
    path::PathBuf,
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
    signal::unix::{SignalKind, signal},
};

/// The argument of every call (and its reply).
const TEXT: &str = "ping";
/// Each server's prefetch: the framework's default.
const PREFETCH: &str = "32";
/// The first argument that makes this binary a load client.
const CLIENT_MODE: &str = "client";
/// Hang guard for a client's start and for its result after the window.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long a caller waits after a failed call before the next.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Calls/s within this fraction of the best count as "flat".
const FLAT: f64 = 0.05;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CLIENT_MODE) {
        return client(&args[1..]).await;
    }
    let options = Options::parse(&args)?;
    // Registered before any broker starts. Returning from here drops the run,
    // and with it the brokers (killed) and every child process.
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("handling SIGHUP")?;
    let stopped_by = tokio::select! {
        result = drive(options) => return result,
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
        _ = hangup.recv() => "SIGHUP",
    };
    Err(anyhow!(
        "stopped by {stopped_by}: the private brokers are killed"
    ))
}

/// The driver's options.
#[derive(Debug, Clone)]
struct Options {
    warmup: Duration,
    duration: Duration,
    rounds: usize,
    cluster: bool,
    smoke: bool,
    markdown: PathBuf,
    /// The arguments as given, to print the command that reruns it.
    args: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self {
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            rounds: 3,
            cluster: true,
            smoke: false,
            markdown: PathBuf::from("/tmp/scaling.md"),
            args: args.to_vec(),
        };
        let seconds = |value: Option<&String>, flag: &str| -> Result<Duration> {
            let value = value.with_context(|| format!("{flag} needs a number of seconds"))?;
            Duration::try_from_secs_f64(value.parse().with_context(|| format!("{flag} {value}"))?)
                .with_context(|| format!("{flag} {value}"))
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--warmup" => options.warmup = seconds(args.next(), arg)?,
                "--duration" => options.duration = seconds(args.next(), arg)?,
                "--rounds" => {
                    let value = args.next().context("--rounds needs a number")?;
                    options.rounds = value.parse().with_context(|| format!("--rounds {value}"))?;
                }
                "--no-cluster" => options.cluster = false,
                "--markdown" => {
                    options.markdown = args.next().context("--markdown needs a path")?.into();
                }
                "--smoke" => {
                    options.smoke = true;
                    options.cluster = false;
                    options.rounds = 1;
                    options.warmup = Duration::from_secs(1);
                    options.duration = Duration::from_secs(2);
                }
                other => bail!(
                    "unknown option {other}; options: --warmup S, --duration S, --rounds N, \
                     --no-cluster, --markdown PATH, --smoke"
                ),
            }
        }
        ensure!(options.rounds > 0, "--rounds must be at least 1");
        ensure!(!options.duration.is_zero(), "--duration must be positive");
        Ok(options)
    }

    fn rerun_command(&self) -> String {
        let mut command =
            String::from("cargo build --release -p rpc-tests --bins && target/release/scaling");
        for arg in &self.args {
            command.push(' ');
            command.push_str(arg);
        }
        command
    }
}

/// The request queue's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Classic,
    Quorum,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        })
    }
}

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Config {
    nodes: usize,
    kind: Kind,
    servers: usize,
    clients: usize,
    /// Calls in flight, all clients together.
    in_flight: usize,
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} node(s), {} server(s), {} client(s), {} in flight",
            self.kind, self.nodes, self.servers, self.clients, self.in_flight
        )
    }
}

impl Config {
    /// Client `index`'s share of the calls in flight.
    fn share(&self, index: usize) -> usize {
        self.in_flight / self.clients + usize::from(index < self.in_flight % self.clients)
    }
}

/// The configurations run on one node: tables 1, 2, 4 and the client check.
fn single_node_configs(options: &Options) -> Vec<Config> {
    let config = |kind, servers, clients, in_flight| Config {
        nodes: 1,
        kind,
        servers,
        clients,
        in_flight,
    };
    if options.smoke {
        return vec![
            config(Kind::Classic, 1, 2, 256),
            config(Kind::Quorum, 1, 2, 256),
        ];
    }
    let mut configs = Vec::new();
    for in_flight in [64, 256, 1024] {
        for servers in [1, 2, 4] {
            configs.push(config(Kind::Classic, servers, 2, in_flight));
        }
    }
    for servers in [1, 2, 4] {
        configs.push(config(Kind::Quorum, servers, 2, 256));
    }
    for clients in [1, 4] {
        configs.push(config(Kind::Classic, 2, clients, 256));
    }
    configs
}

/// The configurations run on the 3-node cluster.
fn cluster_configs() -> Vec<Config> {
    [Kind::Classic, Kind::Quorum]
        .into_iter()
        .map(|kind| Config {
            nodes: 3,
            kind,
            servers: 2,
            clients: 3,
            in_flight: 256,
        })
        .collect()
}

/// The binaries run.
#[derive(Debug)]
struct Binaries {
    /// This one, run again as a load client.
    this: PathBuf,
    lab_server: String,
}

impl Binaries {
    /// This binary and `lab_server`, built beside it.
    fn find() -> Result<Self> {
        let this = std::env::current_exe().context("locating this binary")?;
        let lab_server = this.with_file_name("lab_server");
        ensure!(
            lab_server.exists(),
            "{} is missing: build it with `cargo build --release -p rpc-tests --bins`",
            lab_server.display()
        );
        let lab_server = lab_server
            .to_str()
            .context("the path of lab_server is not UTF-8")?
            .to_owned();
        Ok(Self { this, lab_server })
    }
}

/// Where processes connect, and the brokers' VMs.
#[derive(Debug)]
struct Site {
    /// Per node, the URL list that a process placed on it connects with:
    /// its node first, then the others.
    urls: Vec<String>,
    /// The `beam.smp` pid of each node found.
    beams: Vec<u32>,
}

impl Site {
    fn single(broker: &PrivateBroker) -> Self {
        Self {
            urls: vec![broker.url()],
            beams: beam_pid(broker.node_name()).into_iter().collect(),
        }
    }

    fn cluster(cluster: &Cluster) -> Self {
        Self {
            urls: (0..cluster.len()).map(|i| cluster.urls_from(i)).collect(),
            beams: (0..cluster.len())
                .filter_map(|i| beam_pid(cluster.node(i).node_name()))
                .collect(),
        }
    }

    /// The URLs of the process placed `index`-th: round-robin over the nodes.
    fn url(&self, index: usize) -> &str {
        &self.urls[index % self.urls.len()]
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Sample {
    calls_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    cores: Cores,
}

/// CPU used during the window, in cores (CPU seconds per second).
#[derive(Debug, Clone, Copy, Default)]
struct Cores {
    servers: f64,
    clients: f64,
    broker: f64,
    /// The rest of the machine: other processes, the machine's own broker.
    other: f64,
    idle: f64,
}

/// Runs one configuration once.
async fn measure(
    config: &Config,
    site: &Site,
    binaries: &Binaries,
    options: &Options,
) -> Result<Sample> {
    let queue = format!("scaling-{}-{}", config.kind, uuid::Uuid::new_v4().simple());
    let mut server_args = vec![PREFETCH];
    if config.kind == Kind::Quorum {
        server_args.push("--quorum");
    }
    // The first server declares the queue, on its node; then the others.
    let (binary, queue_name, server_args) = (&binaries.lab_server, &queue, &server_args);
    let mut servers = vec![
        LabServerProcess::start_with(binary, site.url(0), queue_name, "server-0", server_args)
            .await,
    ];
    servers.extend(
        join_all((1..config.servers).map(|index| async move {
            let name = format!("server-{index}");
            LabServerProcess::start_with(binary, site.url(index), queue_name, &name, server_args)
                .await
        }))
        .await,
    );
    let mut clients = Vec::with_capacity(config.clients);
    for (index, started) in join_all((0..config.clients).map(|index| {
        LoadClient::start(
            binaries,
            site.url(index),
            &queue,
            config.share(index),
            options,
        )
    }))
    .await
    .into_iter()
    .enumerate()
    {
        clients.push(started.with_context(|| format!("starting client {index}"))?);
    }
    let pids = Pids {
        servers: servers.iter().filter_map(LabServerProcess::pid).collect(),
        clients: clients
            .iter()
            .filter_map(|client| client.child.id())
            .collect(),
        broker: site.beams.clone(),
    };

    for client in &mut clients {
        client.go().await?;
    }
    tokio::time::sleep(options.warmup).await;
    let before = pids.ticks();
    let window_start = Instant::now();
    tokio::time::sleep(options.duration).await;
    let after = pids.ticks();
    let window = window_start.elapsed().as_secs_f64();

    let mut tally = Tally::default();
    for (index, client) in clients.iter_mut().enumerate() {
        let result = client
            .result(options)
            .await
            .with_context(|| format!("the result of client {index}"))?;
        tally.merge(&result);
    }
    for server in &mut servers {
        server.kill().await;
    }
    for client in &mut clients {
        let _ = tokio::time::timeout(PATIENCE, client.child.wait()).await;
    }
    Ok(Sample {
        calls_per_s: tally.calls as f64 / options.duration.as_secs_f64(),
        p50_ms: tally.quantile_ms(0.50),
        p99_ms: tally.quantile_ms(0.99),
        errors: tally.errors,
        cores: after.cores_since(&before, window),
    })
}

/// A client process: this binary in `client` mode.
#[derive(Debug)]
struct LoadClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl LoadClient {
    /// Starts a client keeping `in_flight` calls to `queue`, and waits until
    /// it has made a first call.
    async fn start(
        binaries: &Binaries,
        url: &str,
        queue: &str,
        in_flight: usize,
        options: &Options,
    ) -> Result<Self> {
        let mut child = Command::new(&binaries.this)
            .arg(CLIENT_MODE)
            .args([url, queue])
            .arg(in_flight.to_string())
            .arg(options.warmup.as_millis().to_string())
            .arg(options.duration.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning a client process")?;
        let stdin = child.stdin.take().context("the client's stdin")?;
        let stdout = child.stdout.take().context("the client's stdout")?;
        let mut client = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        let line = client.next_line(PATIENCE).await?;
        ensure!(line == "ready", "the client said {line:?}, not `ready`");
        Ok(client)
    }

    async fn next_line(&mut self, patience: Duration) -> Result<String> {
        tokio::time::timeout(patience, self.lines.next_line())
            .await
            .context("the client process did not answer in time")?
            .context("reading the client's output")?
            .context("the client process exited")
    }

    /// Starts its calls.
    async fn go(&mut self) -> Result<()> {
        self.stdin.write_all(b"go\n").await?;
        self.stdin.flush().await.context("telling a client to go")
    }

    /// Its tally, once its window has passed and its last calls returned.
    async fn result(&mut self, options: &Options) -> Result<Tally> {
        let line = self
            .next_line(options.warmup + options.duration + PATIENCE)
            .await?;
        let encoded = line
            .strip_prefix("result ")
            .with_context(|| format!("the client said {line:?}, not its result"))?;
        Tally::decode(encoded)
    }
}

/// The processes whose CPU time is read.
#[derive(Debug)]
struct Pids {
    servers: Vec<u32>,
    clients: Vec<u32>,
    broker: Vec<u32>,
}

/// CPU clock ticks used so far.
#[derive(Debug, Clone, Copy)]
struct Ticks {
    servers: u64,
    clients: u64,
    broker: u64,
    machine_busy: u64,
    machine_idle: u64,
}

impl Pids {
    fn ticks(&self) -> Ticks {
        let sum = |pids: &[u32]| pids.iter().filter_map(|&pid| process_ticks(pid)).sum();
        let (machine_busy, machine_idle) = machine_ticks().unwrap_or_default();
        Ticks {
            servers: sum(&self.servers),
            clients: sum(&self.clients),
            broker: sum(&self.broker),
            machine_busy,
            machine_idle,
        }
    }
}

impl Ticks {
    fn cores_since(&self, before: &Self, seconds: f64) -> Cores {
        let per_second = clock_ticks_per_second() * seconds;
        let cores = |after: u64, before: u64| after.saturating_sub(before) as f64 / per_second;
        let servers = cores(self.servers, before.servers);
        let clients = cores(self.clients, before.clients);
        let broker = cores(self.broker, before.broker);
        let busy = cores(self.machine_busy, before.machine_busy);
        Cores {
            servers,
            clients,
            broker,
            other: (busy - servers - clients - broker).max(0.0),
            idle: cores(self.machine_idle, before.machine_idle),
        }
    }
}

/// utime + stime of process `pid`, in clock ticks.
fn process_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, in parentheses: field 3 (state) onwards;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The machine's busy and idle clock ticks, all cores together.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|value| value.parse().ok())
        .collect::<Option<_>>()?;
    let idle = values.get(3)? + values.get(4)?;
    Some((values.iter().sum::<u64>() - idle, idle))
}

/// `getconf CLK_TCK`, or the usual 100.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The pid of the Erlang VM running node `node_name`: the `beam.smp` whose
/// environment names it (RabbitMQ 3.10 does not name the node on the VM's
/// command line).
fn beam_pid(node_name: &str) -> Option<u32> {
    let wanted = format!("RABBITMQ_NODENAME={node_name}");
    let found = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let program = std::fs::read_link(entry.path().join("exe")).ok()?;
            if program.file_name()? != "beam.smp" {
                return None;
            }
            let environment = std::fs::read(entry.path().join("environ")).ok()?;
            environment
                .split(|&byte| byte == 0)
                .any(|variable| variable == wanted.as_bytes())
                .then_some(pid)
        });
    if found.is_none() {
        eprintln!("warning: no beam.smp found for {node_name}: its CPU time is not counted");
    }
    found
}

/// Calls counted, and their latencies: buckets 2% wide.
#[derive(Debug, Clone, Default)]
struct Tally {
    calls: u64,
    errors: u64,
    /// Calls per bucket; bucket 0 is under 1 µs, bucket `b` from
    /// `GROWTH^(b-1)` µs to `GROWTH^b`.
    buckets: Vec<u64>,
}

impl Tally {
    const GROWTH: f64 = 1.02;
    /// Up to 1.02^1199 µs: far beyond any call's timeout.
    const BUCKETS: usize = 1200;

    fn record(&mut self, latency: Duration) {
        let micros = latency.as_secs_f64() * 1e6;
        let bucket = if micros < 1.0 {
            0
        } else {
            (1 + (micros.ln() / Self::GROWTH.ln()) as usize).min(Self::BUCKETS - 1)
        };
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += 1;
        self.calls += 1;
    }

    fn merge(&mut self, other: &Self) {
        self.calls += other.calls;
        self.errors += other.errors;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            *mine += theirs;
        }
    }

    /// The `q` quantile of the latencies, in ms (the middle of its bucket).
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.calls == 0 {
            return f64::NAN;
        }
        let rank = (q * self.calls as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let micros = match bucket {
                    0 => 0.5,
                    _ => Self::GROWTH.powi(bucket as i32 - 1) * (1.0 + Self::GROWTH) / 2.0,
                };
                return micros / 1000.0;
            }
        }
        f64::NAN
    }

    /// `CALLS ERRORS BUCKET:COUNT,...` (`-` for no bucket).
    fn encode(&self) -> String {
        let mut buckets = String::new();
        for (bucket, count) in self.buckets.iter().enumerate().filter(|&(_, &c)| c > 0) {
            if !buckets.is_empty() {
                buckets.push(',');
            }
            let _ = write!(buckets, "{bucket}:{count}");
        }
        if buckets.is_empty() {
            buckets.push('-');
        }
        format!("{} {} {buckets}", self.calls, self.errors)
    }

    fn decode(encoded: &str) -> Result<Self> {
        let mut fields = encoded.split_whitespace();
        let mut next = |what| {
            fields
                .next()
                .with_context(|| format!("a result without {what}"))
        };
        let calls: u64 = next("calls")?.parse().context("the calls of a result")?;
        let errors = next("errors")?.parse().context("the errors of a result")?;
        let mut tally = Self {
            calls: 0,
            errors,
            buckets: Vec::new(),
        };
        for pair in next("latencies")?.split(',').filter(|pair| *pair != "-") {
            let (bucket, count) = pair
                .split_once(':')
                .with_context(|| format!("a bad bucket {pair:?}"))?;
            let bucket: usize = bucket.parse().context("a bucket")?;
            ensure!(bucket < Self::BUCKETS, "bucket {bucket} out of range");
            if tally.buckets.len() <= bucket {
                tally.buckets.resize(bucket + 1, 0);
            }
            tally.buckets[bucket] += count.parse::<u64>().context("a bucket's count")?;
            tally.calls += tally.buckets[bucket];
        }
        ensure!(
            tally.calls == calls,
            "a result whose buckets hold {} calls, not {calls}",
            tally.calls
        );
        Ok(tally)
    }
}

/// The client mode: `scaling client URL QUEUE IN_FLIGHT WARMUP_MS
/// DURATION_MS`. Makes one call and prints `ready`; on `go` from stdin, keeps
/// `IN_FLIGHT` callers calling for the warm-up and the window, then prints
/// `result ...` (see [`Tally::encode`]) for the calls that ended in the
/// window.
async fn client(args: &[String]) -> Result<()> {
    let [url, queue, in_flight, warmup_ms, duration_ms] = args else {
        bail!("usage: scaling client URL QUEUE IN_FLIGHT WARMUP_MS DURATION_MS");
    };
    let in_flight: usize = in_flight.parse().context("IN_FLIGHT")?;
    let warmup = Duration::from_millis(warmup_ms.parse().context("WARMUP_MS")?);
    let duration = Duration::from_millis(duration_ms.parse().context("DURATION_MS")?);
    let connection = Connection::connect(url).await.context("connecting")?;
    let session = Client::new(&connection)
        .await
        .context("opening a client session")?;
    let lab = LabClient::new(session).with_queue(queue);
    let first = lab.echo(TEXT.to_owned()).await.context("a first call")?;
    ensure!(first == TEXT, "echo returned {first:?}");
    say("ready")?;
    let go = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .context("reading stdin")?
    .context("reading stdin")?;
    ensure!(go.trim() == "go", "expected `go`, got {go:?}");
    let measured_from = Instant::now() + warmup;
    let until = measured_from + duration;
    let callers = (0..in_flight).map(|_| tokio::spawn(caller(lab.clone(), measured_from, until)));
    let mut tally = Tally::default();
    for finished in join_all(callers).await {
        tally.merge(&finished.context("a caller task")?);
    }
    say(&format!("result {}", tally.encode()))?;
    connection.close().await;
    Ok(())
}

/// Calls `echo` in a loop until `until`; counts the calls that end from
/// `measured_from`.
async fn caller(lab: LabClient, measured_from: Instant, until: Instant) -> Tally {
    static ERROR_SHOWN: AtomicBool = AtomicBool::new(false);
    let mut tally = Tally::default();
    while Instant::now() < until {
        let sent = Instant::now();
        let echoed = lab.echo(TEXT.to_owned()).await;
        let ended = Instant::now();
        let ok = matches!(&echoed, Ok(text) if text == TEXT);
        if (measured_from..until).contains(&ended) {
            if ok {
                tally.record(ended - sent);
            } else {
                tally.errors += 1;
            }
        }
        if !ok {
            if !ERROR_SHOWN.swap(true, Ordering::Relaxed) {
                eprintln!("client: a call failed (only the first is shown): {echoed:?}");
            }
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
    tally
}

/// Prints `line` to stdout at once (the driver reads it through a pipe).
fn say(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush().context("writing to stdout")
}

/// The driver: every phase, then the report.
async fn drive(options: Options) -> Result<()> {
    let binaries = Binaries::find()?;
    ensure!(
        PrivateBroker::available(),
        "/usr/lib/rabbitmq/bin/rabbitmq-server is missing: install Debian's rabbitmq-server"
    );
    let single = single_node_configs(&options);
    let cluster = if options.cluster {
        cluster_configs()
    } else {
        Vec::new()
    };
    let runs = (single.len() + cluster.len()) * options.rounds;
    let per_run = options.warmup + options.duration + Duration::from_millis(1500);
    eprintln!(
        "{runs} runs of {:?} + {:?}: about {} minutes with the brokers' start",
        options.warmup,
        options.duration,
        (per_run.as_secs_f64() * runs as f64 / 60.0 + if options.cluster { 2.0 } else { 0.5 })
            .ceil()
    );
    let mut report = Report::new(&options);

    eprintln!("starting a private node");
    {
        let broker = started("the private node", PrivateBroker::start()).await?;
        let site = Site::single(&broker);
        run_phase(&single, &site, &binaries, &options, &mut report).await;
    }
    // The node is killed; a report so far, in case the cluster fails.
    std::fs::write(&options.markdown, report.markdown())
        .with_context(|| format!("writing {}", options.markdown.display()))?;

    if !cluster.is_empty() {
        eprintln!("starting a private 3-node cluster");
        let nodes = started("the private cluster", Cluster::start(3)).await?;
        let site = Site::cluster(&nodes);
        run_phase(&cluster, &site, &binaries, &options, &mut report).await;
    }
    let markdown = report.markdown();
    println!("{markdown}");
    std::fs::write(&options.markdown, &markdown)
        .with_context(|| format!("writing {}", options.markdown.display()))?;
    eprintln!("written to {}", options.markdown.display());
    ensure!(
        report.failures == 0,
        "{} run(s) failed (see above)",
        report.failures
    );
    Ok(())
}

/// Starts brokers in a task of their own, so that a panic while they boot
/// (the helpers panic) is an error here; the nodes of a failed start are
/// killed as the task unwinds.
async fn started<T: Send + 'static>(
    what: &str,
    start: impl Future<Output = T> + Send + 'static,
) -> Result<T> {
    tokio::spawn(start)
        .await
        .map_err(|error| anyhow!("{what} did not start: {error}"))
}

/// Runs every configuration of `configs`, round after round, each round
/// starting at another configuration.
async fn run_phase(
    configs: &[Config],
    site: &Site,
    binaries: &Binaries,
    options: &Options,
    report: &mut Report,
) {
    for round in 0..options.rounds {
        let first = round * configs.len() / options.rounds;
        for offset in 0..configs.len() {
            let config = configs[(first + offset) % configs.len()];
            match measure(&config, site, binaries, options).await {
                Ok(sample) => {
                    eprintln!(
                        "round {}/{}: {config}: {:.0} calls/s, p50 {:.2} ms, p99 {:.2} ms, \
                         {} errors; cores: servers {:.2}, clients {:.2}, broker {:.2}, \
                         other {:.2}, idle {:.2}",
                        round + 1,
                        options.rounds,
                        sample.calls_per_s,
                        sample.p50_ms,
                        sample.p99_ms,
                        sample.errors,
                        sample.cores.servers,
                        sample.cores.clients,
                        sample.cores.broker,
                        sample.cores.other,
                        sample.cores.idle,
                    );
                    report.samples.push((config, sample));
                }
                Err(error) => {
                    eprintln!("round {}: {config}: failed: {error:#}", round + 1);
                    report.failures += 1;
                }
            }
        }
    }
}

/// Every sample, and how to write them up.
#[derive(Debug)]
struct Report {
    options: Options,
    machine: String,
    samples: Vec<(Config, Sample)>,
    failures: usize,
}

/// A configuration's medians over its runs.
#[derive(Debug, Clone, Copy)]
struct Summary {
    runs: usize,
    calls_per_s: f64,
    min: f64,
    max: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    cores: Cores,
}

impl Report {
    fn new(options: &Options) -> Self {
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let rabbitmq = std::fs::read_dir("/usr/lib/rabbitmq/lib")
            .ok()
            .and_then(|entries| {
                entries.flatten().find_map(|entry| {
                    let name = entry.file_name().to_str()?.to_owned();
                    Some(name.strip_prefix("rabbitmq_server-")?.to_owned())
                })
            })
            .unwrap_or_else(|| "(version unknown)".to_owned());
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|text| {
                text.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let machine = format!(
            "{cores} cores shared by everything (private brokers, servers, clients, and \
             whatever else runs: column `other`), RabbitMQ {rabbitmq} (private nodes, \
             default settings), release build, load average {load} at the start"
        );
        Self {
            options: options.clone(),
            machine,
            samples: Vec::new(),
            failures: 0,
        }
    }

    fn summary(&self, config: &Config) -> Option<Summary> {
        let samples: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|(c, _)| c == config)
            .map(|(_, sample)| sample)
            .collect();
        if samples.is_empty() {
            return None;
        }
        let median_of = |value: &dyn Fn(&Sample) -> f64| {
            let mut values: Vec<f64> = samples.iter().map(|sample| value(sample)).collect();
            median(&mut values)
        };
        let calls: Vec<f64> = samples.iter().map(|sample| sample.calls_per_s).collect();
        Some(Summary {
            runs: samples.len(),
            calls_per_s: median_of(&|sample| sample.calls_per_s),
            min: calls.iter().copied().fold(f64::INFINITY, f64::min),
            max: calls.iter().copied().fold(0.0, f64::max),
            p50_ms: median_of(&|sample| sample.p50_ms),
            p99_ms: median_of(&|sample| sample.p99_ms),
            errors: samples.iter().map(|sample| sample.errors).sum(),
            cores: Cores {
                servers: median_of(&|sample| sample.cores.servers),
                clients: median_of(&|sample| sample.cores.clients),
                broker: median_of(&|sample| sample.cores.broker),
                other: median_of(&|sample| sample.cores.other),
                idle: median_of(&|sample| sample.cores.idle),
            },
        })
    }

    /// The configurations measured that `keep` selects, by nodes, queue
    /// type, calls in flight, servers and clients.
    fn configs(&self, keep: impl Fn(&Config) -> bool) -> Vec<Config> {
        let mut configs: Vec<Config> = Vec::new();
        for (config, _) in &self.samples {
            if keep(config) && !configs.contains(config) {
                configs.push(*config);
            }
        }
        configs.sort_by_key(|c| {
            (
                c.nodes,
                c.kind == Kind::Quorum,
                c.in_flight,
                c.servers,
                c.clients,
            )
        });
        configs
    }

    fn table(&self, out: &mut String, configs: &[Config]) {
        out.push_str(
            "| queue | nodes | servers | clients | in flight | calls/s | min–max | runs | p50 ms | \
             p99 ms | errors | CPU servers | clients | broker | other | idle |\n\
             |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        );
        for config in configs {
            let Some(s) = self.summary(config) else {
                continue;
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | **{:.0}** | {:.0}–{:.0} | {} | {:.2} | {:.2} | {} | \
                 {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                config.kind,
                config.nodes,
                config.servers,
                config.clients,
                config.in_flight,
                s.calls_per_s,
                s.min,
                s.max,
                s.runs,
                s.p50_ms,
                s.p99_ms,
                s.errors,
                s.cores.servers,
                s.cores.clients,
                s.cores.broker,
                s.cores.other,
                s.cores.idle,
            );
        }
    }

    fn markdown(&self) -> String {
        let options = &self.options;
        let mut out = String::from("# Throughput of one request queue (`echo`, closed loop)\n\n");
        let _ = write!(
            out,
            "Machine: {}.\n\nEach figure is the median of {} interleaved run(s): {:?} warm-up, \
             then {:?} measured. calls/s counts the calls completed in the window; p50/p99 \
             are their latencies (2% buckets); min–max is the spread of calls/s over the \
             runs. CPU is in cores (CPU seconds per second) during the window: the \
             `lab_server` processes (prefetch {PREFETCH}), the client processes, the private \
             nodes' `beam.smp`, the rest of the machine, and idle.\n\n\
             Rerun: `{}`\n\n",
            self.machine,
            options.rounds,
            options.warmup,
            options.duration,
            options.rerun_command()
        );
        if self.failures > 0 {
            let _ = writeln!(out, "**{} run(s) failed**: see the log.\n", self.failures);
        }

        out.push_str("## 1–2. One node: classic and quorum queue, by server processes\n\n");
        let by_servers = self.configs(|c| c.nodes == 1 && c.clients == 2 && c.in_flight == 256);
        self.table(&mut out, &by_servers);

        let cluster = self.configs(|c| c.nodes > 1);
        if !cluster.is_empty() {
            out.push_str(
                "\n## 3. 3-node cluster, classic vs quorum (servers on nodes 1 and 2, \
                 clients on nodes 1, 2, 3; each connects with every node's URL, its own \
                 first; the queue is declared on node 1)\n\n",
            );
            self.table(&mut out, &cluster);
        }

        let saturation =
            self.configs(|c| c.nodes == 1 && c.kind == Kind::Classic && c.clients == 2);
        if !saturation.is_empty() {
            self.saturation(&mut out, &saturation);
        }

        let check = self.configs(|c| {
            c.nodes == 1 && c.kind == Kind::Classic && c.servers == 2 && c.in_flight == 256
        });
        if check.len() > 1 {
            out.push_str(
                "\n## Are the clients the limit? Classic, one node, 2 servers, the same 256 \
                 calls in flight from 1, 2 or 4 client processes\n\n",
            );
            self.table(&mut out, &check);
        }
        out
    }

    /// Table 4: calls/s by servers × in flight, where it flattens, and the
    /// details.
    fn saturation(&self, out: &mut String, configs: &[Config]) {
        let mut in_flights: Vec<usize> = configs.iter().map(|c| c.in_flight).collect();
        in_flights.dedup();
        let mut servers: Vec<usize> = configs.iter().map(|c| c.servers).collect();
        servers.sort_unstable();
        servers.dedup();
        out.push_str(
            "\n## 4. Saturation: classic queue, one node, 2 clients — calls/s (median)\n\n",
        );
        out.push_str("| servers \\ in flight |");
        for in_flight in &in_flights {
            let _ = write!(out, " {in_flight} |");
        }
        out.push_str("\n|--:|");
        out.push_str(&"--:|".repeat(in_flights.len()));
        out.push('\n');
        let mut best: Option<(Config, f64)> = None;
        for &count in &servers {
            let _ = write!(out, "| {count} |");
            for &in_flight in &in_flights {
                let cell = configs
                    .iter()
                    .find(|c| c.servers == count && c.in_flight == in_flight)
                    .and_then(|c| Some((*c, self.summary(c)?)));
                match cell {
                    Some((config, summary)) => {
                        let _ = write!(out, " {:.0} |", summary.calls_per_s);
                        if best.is_none_or(|(_, calls)| summary.calls_per_s > calls) {
                            best = Some((config, summary.calls_per_s));
                        }
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        if let Some((config, calls)) = best {
            let flat: Vec<String> = configs
                .iter()
                .filter(|c| {
                    self.summary(c)
                        .is_some_and(|s| s.calls_per_s >= calls * (1.0 - FLAT))
                })
                .map(|c| format!("{} servers × {} in flight", c.servers, c.in_flight))
                .collect();
            let _ = writeln!(
                out,
                "\nBest: **{calls:.0} calls/s** ({} servers, {} in flight). Within {:.0}% of \
                 it (the plateau): {}.\n",
                config.servers,
                config.in_flight,
                FLAT * 100.0,
                flat.join("; ")
            );
        }
        self.table(out, configs);
    }
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
