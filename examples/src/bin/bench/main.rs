//! Implementations of the same RPC service, side by side: the framework
//! against hand-written lapin and hand-written amqprs, or the framework with
//! its observability on against the same framework with it off.
//!
//! ```text
//! cargo run --release -p rpc-examples --bin bench -- --in-flight 1,64,256
//! cargo run --release -p rpc-examples --bin bench -- --peers framework,raw,amqprs
//! cargo run --release -p rpc-examples --bin bench -- --peers observed,framework
//! cargo run --release -p rpc-examples --features rpc-runtime/amqprs --bin bench -- --peers framework,raw,amqprs
//! ```
//!
//! The framework's peers run on the transport the build has: lapin, or with
//! `--features rpc-runtime/amqprs` amqprs (the report then names them
//! "framework on amqprs").
//!
//! The peers, chosen with `--peers` and lettered A, B, ... in that order:
//!
//! - `framework`: the framework's generated client and server, observability
//!   off: no `tracing` subscriber, no metrics recorder, the client built with
//!   `trace_context(false)`.
//! - `observed`: the same, observability on, as in production: a `tracing`
//!   `fmt` subscriber at INFO (writing to a sink), a Prometheus recorder,
//!   trace context on (`observed.rs` says how its client, in the driver
//!   process, is kept apart from the others').
//! - `raw`: a hand-written raw lapin pair doing the same work over the same
//!   broker (`raw.rs`).
//! - `amqprs`: the same hand-written pair on amqprs instead of lapin, to the
//!   same wire format (`amqprs.rs`).
//! - `raw-traced`, `amqprs-traced`: the same pairs, each request carrying a
//!   W3C `traceparent` that the server reads (`headers.rs`): what the
//!   framework's trace context costs the client library alone.
//!
//! Each peer's server runs in a child process (so that each side's CPU time
//! is its own), its client in this one, and the measurements interleave: for
//! each round, method and number of calls in flight, every peer in turn, the
//! first one first in round 0, the second in round 1, ... (A then B, then B
//! then A, with two). The report gives each peer's medians over the rounds:
//! calls/s, p50 and p99 latency, CPU per call of the client, the server and
//! the broker; and the ratio of each peer to the baseline (the median of each
//! round's own ratio, with a 95% interval): A/B with two peers, one table per
//! peer against the baseline with more. Then the resident memory of an idle
//! client and server and the bytes per call in flight. It writes the tables
//! as Markdown and a chart of calls/s against calls in flight as SVG.
//!
//! Rounds are short and many by default: on a shared machine a round's
//! ratio moves by about 13% either way whatever its length (10,000 calls or
//! 2,500), so the interval narrows with the number of rounds, not with their
//! length.
//!
//! Options (defaults in parentheses; `--help` lists them):
//! `--in-flight LIST` (1,64,256), `--calls N` per round (2500), `--rounds N`
//! (40), `--methods LIST` (fib,echo), `--peers LIST` of `framework`,
//! `observed`, `raw`, `amqprs`, `raw-traced`, `amqprs-traced`
//! (framework,raw; one alone, for profiling: only the peers listed are
//! started), `--baseline PEER` the peer the others' ratios are to (the last
//! one listed), `--workers N` Tokio worker threads of each process (1),
//! `--prefetch N` (32, the framework's default), `--park N` calls parked to
//! measure memory per call in flight (10000), `--chart PATH`
//! (target/bench/calls-per-second.svg), `--markdown PATH`
//! (target/bench/results.md), `--broker-pid PID` whose CPU time to read (the
//! machine's RabbitMQ, found in /proc), `--smoke` (a few hundred calls, one
//! round: CI checks that the benchmark works, never its speed).
//! `AMQP_URL` names the broker. With `observed`, the run ends by checking
//! that its client and server counted every call it made in their metrics,
//! and that no other peer has a recorder. `BENCH_OBSERVE=spans` (or
//! `metrics`, `trace`, or a comma-separated list of them) turns on only
//! those parts of the `observed` peer's observability, to tell their costs
//! apart. `BENCH_CONFIRMS=off` measures every peer without publisher
//! confirms (the framework's `publisher_confirms(false)`), and
//! `BENCH_CONFIRMS=raw-off` the framework with them against raw pairs
//! without them (issue 16's goal);
//! `BENCH_EXPIRATION=off` the raw peers without a per-message `expiration`.
//!
//! Built with `--features mimalloc`, every process of the run (the driver and
//! the servers it starts) allocates with mimalloc instead of glibc's
//! allocator: what a call costs depends on it (BENCHMARKS.md, "The
//! allocator").

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod amqprs;
mod framework;
mod headers;
mod measure;
mod observed;
mod raw;
mod report;
mod service;

use measure::{Broker, context_switches, cpu_time, histogram, rss_kib};
use report::{Point, Report};
use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Which implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Peer {
    /// The framework, its observability off: no subscriber, no recorder,
    /// no trace context.
    Framework,
    /// The framework, its observability on (`observed.rs`).
    Observed,
    /// Hand-written lapin.
    Raw,
    /// Hand-written amqprs.
    Amqprs,
    /// Hand-written lapin, its requests carrying a `traceparent`
    /// (`headers.rs`).
    RawTraced,
    /// Hand-written amqprs, its requests carrying a `traceparent`.
    AmqprsTraced,
}

impl Peer {
    const ALL: [Peer; 6] = [
        Peer::Framework,
        Peer::Observed,
        Peer::Raw,
        Peer::Amqprs,
        Peer::RawTraced,
        Peer::AmqprsTraced,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Peer::Framework => "framework",
            Peer::Observed => "observed",
            Peer::Raw => "raw",
            Peer::Amqprs => "amqprs",
            Peer::RawTraced => "raw-traced",
            Peer::AmqprsTraced => "amqprs-traced",
        }
    }

    /// How the report names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            // Built with `--features rpc-runtime/amqprs`, the framework's
            // peers run on its amqprs transport.
            Peer::Framework if rpc_runtime::TRANSPORT == "amqprs" => "framework on amqprs",
            Peer::Observed if rpc_runtime::TRANSPORT == "amqprs" => "observed framework on amqprs",
            Peer::Framework => "framework",
            Peer::Observed => "observed framework",
            Peer::Raw => "raw lapin",
            Peer::Amqprs => "raw amqprs",
            Peer::RawTraced => "raw lapin, traceparent",
            Peer::AmqprsTraced => "raw amqprs, traceparent",
        }
    }

    fn parse(name: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|peer| peer.name() == name)
            .ok_or_else(|| {
                format!(
                    "unknown peer `{name}`: framework, observed, raw, amqprs, raw-traced or amqprs-traced"
                )
                .into()
            })
    }
}

/// Which method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Fib,
    Echo,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Fib => "fib",
            Method::Echo => "echo",
        }
    }

    fn parse(name: &str) -> Result<Self, Error> {
        match name {
            "fib" => Ok(Method::Fib),
            "echo" => Ok(Method::Echo),
            other => Err(format!("unknown method `{other}`: fib or echo").into()),
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    in_flight: Vec<usize>,
    calls: usize,
    rounds: usize,
    methods: Vec<Method>,
    peers: Vec<Peer>,
    baseline: Option<Peer>,
    workers: usize,
    prefetch: u16,
    park: usize,
    chart: String,
    markdown: String,
    broker_pid: Option<u32>,
    role: Role,
}

#[derive(Debug, Clone)]
enum Role {
    Drive,
    Serve { peer: Peer, queue: String },
    Footprint { peer: Peer },
}

/// What `--help` prints (the header above says more).
const USAGE: &str = "\
usage: bench [OPTIONS]
Measures implementations of the same RPC service side by side (the peers,
lettered A, B, ... in --peers order) against the broker at AMQP_URL, in
interleaved rounds, and reports each one's calls/s, latencies and CPU per
call, and their ratios to the baseline (the header of
examples/src/bin/bench/main.rs says more).

Options (defaults in parentheses):
  --in-flight LIST   numbers of calls in flight (1,64,256)
  --calls N          calls per round (2500)
  --rounds N         rounds (40)
  --methods LIST     of fib, echo (fib,echo)
  --peers LIST       of framework, observed, raw, amqprs, raw-traced,
                     amqprs-traced (framework,raw)
  --baseline PEER    the peer the others' ratios are to (the last one listed)
  --workers N        Tokio worker threads of each process (1)
  --prefetch N       the servers' prefetch (32, the framework's default)
  --park N           calls parked to measure memory per call in flight (10000)
  --chart PATH       the SVG chart (target/bench/calls-per-second.svg)
  --markdown PATH    the Markdown tables (target/bench/results.md)
  --broker-pid PID   the broker whose CPU time to read (found in /proc)
  --smoke            a few hundred calls, one round: checks that it works
  -h, --help         this text

Environment: AMQP_URL, BENCH_OBSERVE, BENCH_CONFIRMS, BENCH_EXPIRATION.";

/// The options, or `None` for `--help`.
fn parse_options() -> Result<Option<Options>, Error> {
    let mut options = Options {
        in_flight: vec![1, 64, 256],
        calls: 2_500,
        rounds: 40,
        methods: vec![Method::Fib, Method::Echo],
        peers: vec![Peer::Framework, Peer::Raw],
        baseline: None,
        workers: 1,
        prefetch: rpc_runtime::DEFAULT_PREFETCH,
        park: 10_000,
        chart: "target/bench/calls-per-second.svg".to_owned(),
        markdown: "target/bench/results.md".to_owned(),
        broker_pid: None,
        role: Role::Drive,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--in-flight" => {
                options.in_flight = value()?
                    .split(',')
                    .map(|n| n.trim().parse())
                    .collect::<Result<_, _>>()?;
            }
            "--calls" => options.calls = value()?.parse()?,
            "--rounds" => options.rounds = value()?.parse()?,
            "--methods" => {
                options.methods = value()?
                    .split(',')
                    .map(|name| Method::parse(name.trim()))
                    .collect::<Result<_, _>>()?;
            }
            "--peers" => {
                options.peers = value()?
                    .split(',')
                    .map(|name| Peer::parse(name.trim()))
                    .collect::<Result<_, _>>()?;
            }
            "--baseline" => options.baseline = Some(Peer::parse(value()?.trim())?),
            "--workers" => options.workers = value()?.parse()?,
            "--prefetch" => options.prefetch = value()?.parse()?,
            "--park" => options.park = value()?.parse()?,
            "--chart" => options.chart = value()?,
            "--markdown" => options.markdown = value()?,
            "--broker-pid" => options.broker_pid = Some(value()?.parse()?),
            "--smoke" => {
                options.in_flight = vec![1, 16];
                options.calls = 300;
                options.rounds = 1;
                options.park = 200;
            }
            "--serve" => {
                let peer = Peer::parse(&value()?)?;
                let queue = args.next().ok_or("--serve PEER QUEUE")?;
                options.role = Role::Serve { peer, queue };
            }
            "--footprint" => {
                options.role = Role::Footprint {
                    peer: Peer::parse(&value()?)?,
                };
            }
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option `{other}`").into()),
        }
    }
    if options.peers.is_empty() {
        return Err("--peers needs at least one peer".into());
    }
    for (i, peer) in options.peers.iter().enumerate() {
        if options.peers[..i].contains(peer) {
            return Err(format!("peer `{}` is listed twice", peer.name()).into());
        }
    }
    if let Some(baseline) = options.baseline
        && !options.peers.contains(&baseline)
    {
        return Err(format!("the baseline `{}` is not among --peers", baseline.name()).into());
    }
    Ok(Some(options))
}

impl Options {
    /// The peer the others' ratios are to: `--baseline`, or the last one
    /// listed (B of the default `framework,raw`).
    fn baseline(&self) -> Peer {
        self.baseline
            .or(self.peers.last().copied())
            .unwrap_or(Peer::Raw)
    }
}

fn main() -> Result<(), Error> {
    let options = match parse_options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(error) => {
            let usage = USAGE.lines().next().unwrap_or_default();
            eprintln!("error: {error}\n{usage} (`--help` lists the options)");
            std::process::exit(2);
        }
    };
    // The worker count is a setting of each process, not a hidden default:
    // on a 2-core machine shared with the broker, one worker measured best.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.workers.max(1))
        .enable_all()
        .build()?;
    // Everything runs in a spawned task, on the runtime's workers, as
    // application code does (not on the thread that blocks on the runtime).
    runtime.block_on(async move {
        let role = options.role.clone();
        tokio::spawn(async move {
            match role {
                Role::Drive => drive(options).await,
                Role::Serve { peer, queue } => serve(peer, &queue, options.prefetch).await,
                Role::Footprint { peer } => footprint(peer, options.park, options.workers).await,
            }
        })
        .await?
    })
}

/// A server child: serves until its stdin closes; answers `usage` with its
/// CPU time and resident memory, `metrics` with the requests its recorder
/// counted (`-` without one).
async fn serve(peer: Peer, queue: &str, prefetch: u16) -> Result<(), Error> {
    let url = rpc_examples::amqp_url();
    // Before the server starts: it registers its metrics handles then.
    let metrics = match peer {
        Peer::Observed => Some(observed::install_globally()?),
        _ => None,
    };
    // The hand-written servers run until the process exits.
    let server = match peer {
        Peer::Framework | Peer::Observed => Some(framework::serve(&url, queue, prefetch).await?),
        Peer::Raw | Peer::RawTraced => {
            raw::serve(&url, queue, prefetch).await?;
            None
        }
        Peer::Amqprs | Peer::AmqprsTraced => {
            amqprs::serve(&url, queue, prefetch).await?;
            None
        }
    };
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.as_str() {
            "usage" => println!(
                "usage {} {} {}",
                cpu_time().as_micros(),
                rss_kib("self"),
                context_switches("self")
            ),
            "metrics" => println!(
                "metrics {}",
                metrics.as_ref().map_or("-".to_owned(), |handle| {
                    observed::count(&handle.render(), "rpc_server_requests_total").to_string()
                })
            ),
            _ => {}
        }
    }
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(())
}

/// A footprint child: the resident memory of an idle client (connected,
/// ready to call), then the bytes each call in flight adds, with `park` calls
/// waiting on a queue that nobody consumes.
async fn footprint(peer: Peer, park: usize, workers: usize) -> Result<(), Error> {
    let url = rpc_examples::amqp_url();
    let admin = admin::Admin::connect(&url).await?;
    let parking = admin.declare_parking().await?;
    let here = tokio::runtime::Handle::current();
    let (idle, bytes_per_call) = match PeerClient::connect(peer, &url, &parking, workers).await? {
        PeerClient::Framework(client, payload) => {
            let client: Arc<framework::FrameworkClient> = client.into();
            park_calls(client, Arc::new(payload), &here, &admin, &parking, park).await?
        }
        PeerClient::Observed(client) => {
            let (handle, payload) = (client.handle().clone(), client.payload().clone());
            park_calls(client.client(), payload, &handle, &admin, &parking, park).await?
        }
        PeerClient::Raw(client, payload) => {
            let client: Arc<raw::RawClient> = client.into();
            park_calls(client, Arc::new(payload), &here, &admin, &parking, park).await?
        }
        PeerClient::Amqprs(client, payload) => {
            let client: Arc<amqprs::AmqprsClient> = client.into();
            park_calls(client, Arc::new(payload), &here, &admin, &parking, park).await?
        }
    };
    println!("footprint {idle} {bytes_per_call}");
    Ok(())
}

/// Parks `park` echo calls on `parking`, as tasks on `runtime`; returns the
/// resident KiB before and the resident bytes each parked call added.
async fn park_calls<C: PeerCalls>(
    client: Arc<C>,
    payload: Arc<service::Payload>,
    runtime: &tokio::runtime::Handle,
    admin: &admin::Admin,
    parking: &str,
    park: usize,
) -> Result<(u64, u64), Error> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib("self");
    let parked: Vec<_> = (0..park)
        .map(|_| {
            let (client, payload) = (client.clone(), payload.clone());
            runtime.spawn(async move { client.call(Method::Echo, &payload).await })
        })
        .collect();
    admin.wait_for_messages(parking, park).await?;
    let with_parked = rss_kib("self");
    for call in parked {
        call.abort();
    }
    Ok((
        idle,
        with_parked.saturating_sub(idle) * 1024 / park.max(1) as u64,
    ))
}

/// A server child process, driven through its stdin and stdout.
struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl ServerProcess {
    async fn start(peer: Peer, queue: &str, options: &Options) -> Result<Self, Error> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["--serve", peer.name(), queue])
            .args(["--prefetch", &options.prefetch.to_string()])
            .args(["--workers", &options.workers.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut process = Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
        };
        match process.lines.next_line().await? {
            Some(line) if line == "ready" => Ok(process),
            other => Err(format!("the {} server did not start: {other:?}", peer.name()).into()),
        }
    }

    /// Sends `command`; returns the fields of the answer.
    async fn ask(&mut self, command: &str) -> Result<Vec<String>, Error> {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = self.lines.next_line().await?.ok_or("the server exited")?;
        Ok(line.split_whitespace().skip(1).map(str::to_owned).collect())
    }

    /// (CPU time, resident KiB, context switches) of the server process.
    async fn usage(&mut self) -> Result<(Duration, u64, u64), Error> {
        let fields = self.ask("usage").await?;
        let field = |i: usize, name: &str| -> Result<u64, Error> {
            Ok(fields
                .get(i)
                .ok_or_else(|| format!("usage: {name}"))?
                .parse()?)
        };
        Ok((
            Duration::from_micros(field(0, "cpu")?),
            field(1, "rss")?,
            field(2, "switches")?,
        ))
    }

    /// The requests the server's recorder counted; `None` without one.
    async fn recorded(&mut self) -> Result<Option<u64>, Error> {
        let fields = self.ask("metrics").await?;
        match fields.first().map(String::as_str) {
            Some("-") => Ok(None),
            Some(count) => Ok(Some(count.parse()?)),
            None => Err("metrics: no count".into()),
        }
    }

    async fn stop(mut self) -> Result<(), Error> {
        drop(self.stdin);
        self.child.wait().await?;
        Ok(())
    }
}

/// The footprint of one peer's client, measured in a child process.
async fn measure_footprint(peer: Peer, options: &Options) -> Result<(u64, u64), Error> {
    let output = Command::new(std::env::current_exe()?)
        .args(["--footprint", peer.name()])
        .args(["--park", &options.park.to_string()])
        .args(["--workers", &options.workers.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|line| line.starts_with("footprint "))
        .ok_or_else(|| format!("the {} footprint run failed: {text}", peer.name()))?;
    let mut fields = line.split_whitespace().skip(1);
    Ok((
        fields.next().ok_or("idle")?.parse()?,
        fields.next().ok_or("bytes")?.parse()?,
    ))
}

/// One peer's client.
enum PeerClient {
    Framework(Box<framework::FrameworkClient>, service::Payload),
    /// On a runtime of its own, with its payload.
    Observed(Box<observed::ObservedClient>),
    Raw(Box<raw::RawClient>, service::Payload),
    Amqprs(Box<amqprs::AmqprsClient>, service::Payload),
}

impl PeerClient {
    async fn connect(peer: Peer, url: &str, queue: &str, workers: usize) -> Result<Self, Error> {
        let payload = service::Payload::sample(7);
        Ok(match peer {
            Peer::Framework => PeerClient::Framework(
                Box::new(framework::FrameworkClient::connect(url, queue, false).await?),
                payload,
            ),
            Peer::Observed => PeerClient::Observed(Box::new(
                observed::ObservedClient::connect(url, queue, workers).await?,
            )),
            Peer::Raw | Peer::RawTraced => PeerClient::Raw(
                Box::new(raw::RawClient::connect(url, queue, peer == Peer::RawTraced).await?),
                payload,
            ),
            Peer::Amqprs | Peer::AmqprsTraced => PeerClient::Amqprs(
                Box::new(
                    amqprs::AmqprsClient::connect(url, queue, peer == Peer::AmqprsTraced).await?,
                ),
                payload,
            ),
        })
    }

    /// Makes `calls` calls, `in_flight` at a time; returns their latencies.
    async fn run(
        &self,
        method: Method,
        in_flight: usize,
        calls: usize,
    ) -> Result<hdrhistogram::Histogram<u64>, Error> {
        // One instance per peer, so that each call's future holds only its
        // own peer's state.
        match self {
            PeerClient::Framework(client, payload) => {
                run_calls(&**client, payload, method, in_flight, calls).await
            }
            // In a task on its own runtime, whose thread has its subscriber.
            PeerClient::Observed(client) => client.run(method, in_flight, calls).await,
            PeerClient::Raw(client, payload) => {
                run_calls(&**client, payload, method, in_flight, calls).await
            }
            PeerClient::Amqprs(client, payload) => {
                run_calls(&**client, payload, method, in_flight, calls).await
            }
        }
    }
}

/// A peer's client, as the driver calls it.
trait PeerCalls: Send + Sync + 'static {
    fn call(
        &self,
        method: Method,
        payload: &service::Payload,
    ) -> impl Future<Output = Result<(), Error>> + Send;
}

// Every peer gets the payload by value, as callers building it for each call
// would give it.
impl<C: service::Generated> PeerCalls for framework::FrameworkClient<C> {
    async fn call(&self, method: Method, payload: &service::Payload) -> Result<(), Error> {
        match method {
            Method::Fib => self.fib().await.map(drop),
            Method::Echo => self.echo(payload.clone()).await.map(drop),
        }
    }
}

impl PeerCalls for raw::RawClient {
    async fn call(&self, method: Method, payload: &service::Payload) -> Result<(), Error> {
        match method {
            Method::Fib => self.fib().await.map(drop),
            Method::Echo => self.echo(payload.clone()).await.map(drop),
        }
    }
}

impl PeerCalls for amqprs::AmqprsClient {
    async fn call(&self, method: Method, payload: &service::Payload) -> Result<(), Error> {
        match method {
            Method::Fib => self.fib().await.map(drop),
            Method::Echo => self.echo(payload.clone()).await.map(drop),
        }
    }
}

/// Makes `calls` calls, `in_flight` at a time; returns their latencies.
async fn run_calls<C: PeerCalls>(
    client: &C,
    payload: &service::Payload,
    method: Method,
    in_flight: usize,
    calls: usize,
) -> Result<hdrhistogram::Histogram<u64>, Error> {
    use futures_util::StreamExt;
    // Uncontended: the calls run in this one task.
    let latencies = Mutex::new(histogram());
    let failures = Mutex::new(Vec::new());
    futures_util::stream::iter(0..calls)
        .for_each_concurrent(in_flight, |_| async {
            let started = Instant::now();
            match client.call(method, payload).await {
                Ok(()) => latencies
                    .lock()
                    .expect("lock")
                    .saturating_record(started.elapsed().as_micros() as u64),
                Err(error) => failures.lock().expect("lock").push(error.to_string()),
            }
        })
        .await;
    let failures = failures.into_inner().expect("lock");
    if let Some(first) = failures.first() {
        return Err(format!(
            "{} of {calls} calls failed; the first: {first}",
            failures.len()
        )
        .into());
    }
    Ok(latencies.into_inner().expect("lock"))
}

/// One peer under test: its server child and its client.
struct Contender {
    peer: Peer,
    queue: String,
    server: ServerProcess,
    client: PeerClient,
    /// Calls made, warm-ups included.
    calls: u64,
}

async fn drive(options: Options) -> Result<(), Error> {
    let url = rpc_examples::amqp_url();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let broker = match options.broker_pid {
        Some(pid) => Broker::with_pid(pid),
        None => Broker::find(),
    };
    // Only the peers measured: a peer's client alone changes the driver
    // process (the observed one registers its subscriber there).
    let mut contenders = Vec::new();
    for &peer in &options.peers {
        let queue = format!("bench.{}.{}", peer.name(), &run_id[..8]);
        let server = ServerProcess::start(peer, &queue, &options).await?;
        contenders.push((peer, queue, server));
    }
    let mut contenders: Vec<Contender> = {
        let mut connected = Vec::new();
        for (peer, queue, server) in contenders {
            let client = PeerClient::connect(peer, &url, &queue, options.workers).await?;
            connected.push(Contender {
                peer,
                queue,
                server,
                client,
                calls: 0,
            });
        }
        connected
    };
    let mut report = Report::new(&options, broker.as_ref().map(Broker::pid));

    // Memory first, in fresh processes.
    for contender in &mut contenders {
        let idle_server = contender.server.usage().await?.1;
        let footprint = measure_footprint(contender.peer, &options).await?;
        report.set_memory(contender.peer, idle_server, footprint);
    }

    let warm_up = (options.calls / 10).clamp(50, 1000);
    for round in 0..options.rounds {
        for &method in &options.methods {
            for &in_flight in &options.in_flight {
                // Each peer first in turn: A then B, then B then A.
                let mut order: Vec<usize> = (0..contenders.len()).collect();
                order.rotate_left(round % contenders.len());
                for index in order {
                    let Contender {
                        peer,
                        server,
                        client,
                        calls,
                        ..
                    } = &mut contenders[index];
                    client.run(method, in_flight, warm_up).await?;
                    let (server_cpu, _, server_switches) = server.usage().await?;
                    let client_cpu = cpu_time();
                    let client_switches = context_switches("self");
                    let broker_cpu = broker.as_ref().map(Broker::cpu_time);
                    let started = Instant::now();
                    let latencies = client.run(method, in_flight, options.calls).await?;
                    let elapsed = started.elapsed();
                    let client_cpu = cpu_time().saturating_sub(client_cpu);
                    let client_switches = context_switches("self").saturating_sub(client_switches);
                    let (server_cpu_after, _, server_switches_after) = server.usage().await?;
                    let server_cpu = server_cpu_after.saturating_sub(server_cpu);
                    let server_switches = server_switches_after.saturating_sub(server_switches);
                    let broker_cpu = broker
                        .as_ref()
                        .zip(broker_cpu)
                        .map(|(broker, before)| broker.cpu_time().saturating_sub(before));
                    *calls += (warm_up + options.calls) as u64;
                    let point = Point::new(
                        options.calls,
                        elapsed,
                        &latencies,
                        (client_cpu, server_cpu, broker_cpu),
                        (client_switches, server_switches),
                    );
                    eprintln!(
                        "round {round} {:>9} {:>4} {in_flight:>3} in flight: {point}",
                        peer.name(),
                        method.name()
                    );
                    report.add(*peer, method, in_flight, point);
                }
            }
        }
    }

    // The last requests' counts settle after their replies.
    tokio::time::sleep(Duration::from_millis(200)).await;
    check_metrics(&mut contenders).await?;
    let mut queues = Vec::new();
    for contender in contenders {
        contender.server.stop().await?;
        queues.push(contender.queue);
    }
    admin::Admin::connect(&url).await?.delete(&queues).await?;
    let markdown = report.markdown();
    println!("{markdown}");
    report.write(&options.markdown, &markdown, &options.chart)?;
    eprintln!("wrote {} and {}", options.markdown, options.chart);
    Ok(())
}

/// Checks that the observed peer's client and server recorded every call it
/// made, that its client's recorder holds nothing of the other peers', and
/// that the other framework server has no recorder.
async fn check_metrics(contenders: &mut [Contender]) -> Result<(), Error> {
    if !observed::part("metrics") {
        return Ok(());
    }
    for contender in contenders {
        let server = contender.server.recorded().await?;
        match (&contender.client, server) {
            (PeerClient::Observed(client), Some(server)) => {
                let (client, others) = client.recorded();
                eprintln!(
                    "metrics: observed client counted {client} calls, its server {server} \
                     requests, of {} made",
                    contender.calls
                );
                if client != contender.calls || server < contender.calls || others {
                    return Err(format!(
                        "the observed peer's metrics are off: client {client}, server {server}, \
                         {} calls made; other services' metrics in its recorder: {others}",
                        contender.calls
                    )
                    .into());
                }
            }
            (PeerClient::Observed(_), None) => {
                return Err("the observed server has no recorder".into());
            }
            (_, Some(_)) => {
                return Err(format!("the {} server has a recorder", contender.peer.name()).into());
            }
            (_, None) => {}
        }
    }
    Ok(())
}
