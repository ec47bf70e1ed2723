//! Helpers for the integration tests: the broker's address, unique names,
//! queues that delete themselves, a test service, raw AMQP access, and a TCP
//! relay that can cut connections.
//!
//! Tests never stop, reset or reconfigure the broker they are given: they
//! declare uniquely named queues and delete them when done.

use rpc_runtime::{
    Client, Connection, ConnectionBuilder, RequestContext, Server, ServerHandle, rpc_service,
};
use serde::{Deserialize, Serialize};
use std::{
    future::IntoFuture,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    net::TcpListener,
    sync::{Notify, Semaphore, mpsc},
};

pub mod fuzzing;
pub mod private_broker;
pub mod raw;
pub mod relay;

/// The broker the tests use: `AMQP_URL`, or the local default.
pub fn amqp_url() -> String {
    rpc_examples::amqp_url()
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    format!("rpc-test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// Fails the test if `future` takes longer than `limit`: a guard against
/// hanging forever, not a timing assertion.
pub async fn within<F: IntoFuture>(limit: Duration, what: &str, future: F) -> F::Output {
    match tokio::time::timeout(limit, future.into_future()).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Guard used around whole operations: long enough for a loaded CI machine.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Guard around operations that run `rabbitmqctl` (a hang guard too): the
/// Erlang CLI alone takes seconds to start on a loaded machine (one
/// `close_all_connections` took 19 s with both cores busy), so a guard that
/// includes it is sized for the CLI, not for what the framework does.
pub const CLI_PATIENCE: Duration = Duration::from_secs(180);

/// A connection builder with a unique connection name, so that tests can
/// find their own connection on the broker.
pub fn connection_builder(name: &str) -> ConnectionBuilder {
    Connection::builder(amqp_url())
        .name(name)
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(500))
}

/// Connects with a unique connection name.
pub async fn connect(name: &str) -> Connection {
    connection_builder(name)
        .connect()
        .await
        .expect("the broker must be reachable at AMQP_URL (run scripts/test.sh)")
}

/// A queue name that is deleted from the broker when the guard drops,
/// whatever the test's outcome.
#[derive(Debug)]
pub struct TestQueue {
    pub name: String,
}

impl TestQueue {
    pub fn new(prefix: &str) -> Self {
        Self {
            name: unique(prefix),
        }
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime, which cannot block on another one:
        // delete from a thread of our own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(raw::delete_queue(&name))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("warning: could not delete test queue {}", self.name);
        }
    }
}

/// A shape, to send an enum across.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    Circle { radius: f64 },
    Square(f64),
    Dot,
}

/// A point, to send a struct across.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

/// The application error of [`Lab`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum LabError {
    #[error("negative size: {0}")]
    NegativeSize(f64),
}

/// A service with one method per behaviour under test.
#[rpc_service]
pub trait Lab {
    /// Returns its argument.
    async fn echo(&self, text: String) -> String;
    /// Sums two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Takes nothing, returns nothing.
    async fn nothing(&self);
    /// Describes a shape at a point, or refuses negative sizes.
    async fn describe(&self, shape: Shape, at: Point) -> Result<String, LabError>;
    /// Panics with `message`.
    async fn explode(&self, message: String) -> u32;
    /// Holds the call until the test releases it (see [`LabControl`]);
    /// returns the server's name and whether the request was redelivered.
    async fn hold(&self, tag: u32) -> (String, bool);
    /// Records `tag` (for one-way calls).
    async fn record(&self, tag: String);
    /// The server's name.
    async fn whoami(&self) -> String;
    /// Sleeps `millis`, then returns it.
    async fn nap(&self, millis: u64) -> u64;
}

/// How a test observes and steers its [`LabServer`]s.
#[derive(Debug, Clone)]
pub struct LabControl {
    /// Receives the tag of each `hold` call when it starts.
    started: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<u32>>>,
    started_tx: mpsc::UnboundedSender<u32>,
    /// Permits for `hold` calls to finish.
    release: Arc<Semaphore>,
    /// Tags of `record` calls.
    pub recorded: Arc<Mutex<Vec<String>>>,
    recorded_notify: Arc<Notify>,
    /// Calls handled, all methods together.
    pub handled: Arc<AtomicUsize>,
}

impl Default for LabControl {
    fn default() -> Self {
        let (started_tx, started) = mpsc::unbounded_channel();
        Self {
            started: Arc::new(tokio::sync::Mutex::new(started)),
            started_tx,
            release: Arc::new(Semaphore::new(0)),
            recorded: Arc::default(),
            recorded_notify: Arc::default(),
            handled: Arc::default(),
        }
    }
}

impl LabControl {
    /// Waits until a `hold` call starts and returns its tag.
    pub async fn next_started(&self) -> u32 {
        within(PATIENCE, "a held call to start", self.wait_started())
            .await
            .expect("the control is open")
    }

    /// Waits, without limit, until a `hold` call starts.
    pub async fn wait_started(&self) -> Option<u32> {
        self.started.lock().await.recv().await
    }

    /// Lets `count` held calls finish.
    pub fn release(&self, count: usize) {
        self.release.add_permits(count);
    }

    /// Waits until `record` has recorded `count` tags.
    pub async fn wait_recorded(&self, count: usize) -> Vec<String> {
        within(PATIENCE, "recorded calls", async {
            loop {
                let notified = self.recorded_notify.notified();
                {
                    let recorded = self.recorded.lock().expect("lock");
                    if recorded.len() >= count {
                        return recorded.clone();
                    }
                }
                notified.await;
            }
        })
        .await
    }
}

/// The implementation of [`Lab`].
#[derive(Debug, Clone)]
pub struct LabImpl {
    pub name: String,
    pub control: LabControl,
}

impl Lab for LabImpl {
    async fn echo(&self, text: String) -> String {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        text
    }

    async fn add(&self, a: i64, b: i64) -> i64 {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        a + b
    }

    async fn nothing(&self) {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
    }

    async fn describe(&self, shape: Shape, at: Point) -> Result<String, LabError> {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        match shape {
            Shape::Circle { radius } if radius < 0.0 => Err(LabError::NegativeSize(radius)),
            Shape::Square(side) if side < 0.0 => Err(LabError::NegativeSize(side)),
            shape => Ok(format!("{shape:?} at ({}, {})", at.x, at.y)),
        }
    }

    async fn explode(&self, message: String) -> u32 {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        panic!("{message}");
    }

    async fn hold(&self, tag: u32) -> (String, bool) {
        let redelivered = RequestContext::current().is_some_and(|request| request.redelivered());
        let _ = self.control.started_tx.send(tag);
        self.control
            .release
            .acquire()
            .await
            .expect("semaphore open")
            .forget();
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        (self.name.clone(), redelivered)
    }

    async fn record(&self, tag: String) {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        self.control.recorded.lock().expect("lock").push(tag);
        self.control.recorded_notify.notify_waiters();
    }

    async fn whoami(&self) -> String {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        self.name.clone()
    }

    async fn nap(&self, millis: u64) -> u64 {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

/// Serves a [`LabImpl`] named `name` on `queue`.
pub async fn serve_lab(
    connection: &Connection,
    queue: &TestQueue,
    name: &str,
    control: &LabControl,
    prefetch: u16,
) -> ServerHandle {
    Server::builder()
        .queue(&queue.name)
        .prefetch(prefetch)
        .serve(
            connection,
            LabServer::new(LabImpl {
                name: name.to_owned(),
                control: control.clone(),
            }),
        )
        .await
        .expect("serve")
}

/// A [`LabClient`] for `queue` on a new [`Client`].
pub async fn lab_client(connection: &Connection, queue: &TestQueue) -> (Client, LabClient) {
    let client = Client::new(connection).await.expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);
    (client, lab)
}

/// Binds a listener on an ephemeral local port.
pub async fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// Closes, from the broker's side, every connection named `name`, with
/// `rabbitmqctl close_connection` (which only touches that connection).
/// Returns how many it closed.
pub async fn close_connections_named(name: &str) -> usize {
    let pids = connections_named(name).await;
    for pid in &pids {
        rabbitmqctl(&["-q", "close_connection", pid, "closed by an rpc-tests test"]).await;
    }
    pids.len()
}

/// The broker's ids (pids) of the connections named `name`.
pub async fn connections_named(name: &str) -> Vec<String> {
    let listed = rabbitmqctl(&["-q", "list_connections", "pid", "client_properties"]).await;
    let needle = format!("{{\"connection_name\",\"{name}\"}}");
    listed
        .lines()
        .filter(|line| line.contains(&needle))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect()
}

async fn rabbitmqctl(args: &[&str]) -> String {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .unwrap_or_else(|error| {
            panic!("cannot run rabbitmqctl ({error}): these tests need the broker's CLI on PATH")
        });
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A `lab_server` process (see `src/bin/lab_server.rs`), killed when dropped.
#[derive(Debug)]
pub struct LabServerProcess {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl LabServerProcess {
    /// Starts `binary` (pass `env!("CARGO_BIN_EXE_lab_server")`) and waits
    /// until it consumes `queue`.
    pub async fn start(binary: &str, url: &str, queue: &str, name: &str, prefetch: u16) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(binary)
            .args([url, queue, name, &prefetch.to_string()])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn lab_server");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut process = Self {
            child,
            lines: tokio::io::BufReader::new(stdout).lines(),
        };
        assert_eq!(process.next_line().await, "serving");
        process
    }

    async fn next_line(&mut self) -> String {
        within(PATIENCE, "a line from lab_server", self.lines.next_line())
            .await
            .expect("read lab_server's output")
            .expect("lab_server exited")
    }

    /// Waits until a `hold` call starts in the process; returns its tag.
    pub async fn next_started(&mut self) -> u32 {
        let line = self.next_line().await;
        line.strip_prefix("started ")
            .and_then(|tag| tag.parse().ok())
            .unwrap_or_else(|| panic!("unexpected lab_server output: {line}"))
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("kill lab_server");
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// What a stream of calls saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Calls answered with their own reply.
    pub ok: u64,
    /// Calls answered with another call's reply: must stay 0.
    pub mismatched: u64,
    /// Calls that failed with `ConnectionLost`, with when they failed.
    pub connection_lost: Vec<std::time::Instant>,
    /// Calls that failed with `NotConnected`.
    pub not_connected: u64,
    /// Calls that failed with `Timeout`.
    pub timeouts: u64,
    /// Calls that failed otherwise, described.
    pub other: Vec<String>,
    /// When each successful call completed.
    pub successes: Vec<std::time::Instant>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.mismatched += other.mismatched;
        self.connection_lost.extend(other.connection_lost);
        self.not_connected += other.not_connected;
        self.timeouts += other.timeouts;
        self.other.extend(other.other);
        self.successes.extend(other.successes);
    }

    /// Calls made in all.
    pub fn calls(&self) -> u64 {
        self.ok
            + self.mismatched
            + self.connection_lost.len() as u64
            + self.not_connected
            + self.timeouts
            + self.other.len() as u64
    }

    /// The first success after `instant`.
    pub fn first_success_after(&self, instant: std::time::Instant) -> Option<std::time::Instant> {
        self.successes
            .iter()
            .copied()
            .filter(|t| *t > instant)
            .min()
    }
}

/// Callers making `echo` calls in a loop, each with a token of its own that
/// the reply must carry back, until stopped.
#[derive(Debug)]
pub struct CallStream {
    stopped: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<AtomicUsize>,
    progress: Arc<Notify>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

impl CallStream {
    /// Starts `workers` callers on `lab`.
    pub fn start(lab: &LabClient, workers: usize) -> Self {
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let progress = Arc::new(Notify::new());
        let workers = (0..workers)
            .map(|worker| {
                let lab = lab.clone();
                let stopped = stopped.clone();
                let ok = ok.clone();
                let progress = progress.clone();
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut call = 0u64;
                    while !stopped.load(Ordering::SeqCst) {
                        call += 1;
                        let token = format!("{worker}.{call}");
                        match lab.echo(token.clone()).await {
                            Ok(reply) if reply == token => {
                                tally.ok += 1;
                                tally.successes.push(std::time::Instant::now());
                                ok.fetch_add(1, Ordering::SeqCst);
                                progress.notify_waiters();
                            }
                            Ok(_) => tally.mismatched += 1,
                            Err(rpc_runtime::RpcError::ConnectionLost { .. }) => {
                                tally.connection_lost.push(std::time::Instant::now());
                            }
                            Err(rpc_runtime::RpcError::NotConnected { .. }) => {
                                tally.not_connected += 1
                            }
                            Err(rpc_runtime::RpcError::Timeout { .. }) => tally.timeouts += 1,
                            Err(other) => tally.other.push(other.to_string()),
                        }
                    }
                    tally
                })
            })
            .collect();
        Self {
            stopped,
            ok,
            progress,
            workers,
        }
    }

    /// Waits until `count` more calls have succeeded (from now).
    pub async fn wait_successes(&self, count: usize) {
        let target = self.ok.load(Ordering::SeqCst) + count;
        within(Duration::from_secs(60), "calls to succeed", async {
            loop {
                let notified = self.progress.notified();
                if self.ok.load(Ordering::SeqCst) >= target {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    /// Stops the callers after their current call and sums what they saw.
    pub async fn finish(self) -> Tally {
        self.stopped.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for worker in self.workers {
            total.merge(
                within(PATIENCE, "callers to stop", worker)
                    .await
                    .expect("caller task"),
            );
        }
        total
    }
}
