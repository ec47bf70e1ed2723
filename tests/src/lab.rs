//! The test service, `Lab`: one method per behaviour under test, served by
//! [`LabImpl`], which a test observes and steers through a [`LabControl`];
//! the types it sends across ([`Shape`], [`Point`], [`LabError`]); and the
//! two steps of setting it up, [`serve_lab`] and [`lab_client`] (the usual
//! set-up takes both at once: [`crate::fixture::LabFixture`]).

use crate::{
    broker::TestQueue,
    guards::{PATIENCE, within},
};
use rpc_runtime::{Client, Connection, RequestContext, Server, ServerHandle, rpc_service};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::{Notify, Semaphore, mpsc};

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
    /// What the handler knows of its request (see [`ContextReport`]).
    async fn context(&self) -> ContextReport;
}

/// What a handler saw of its request's context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextReport {
    pub method: String,
    pub correlation_id: Option<String>,
    pub user_id: Option<String>,
    pub trace_id: String,
    pub span_id: String,
    /// Milliseconds left to the caller's deadline, if it sent one.
    pub time_left_ms: Option<u64>,
    /// The call metadata, in name order.
    pub metadata: Vec<(String, String)>,
    /// What a server interceptor attached, if one did.
    pub caller: Option<String>,
}

/// Attached by interceptors of tests, read back in [`ContextReport::caller`].
#[derive(Debug, Clone, PartialEq)]
pub struct Caller(pub String);

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
    /// How many times each `echo` text was run, by every server sharing
    /// this control.
    echoed: Arc<Mutex<HashMap<String, u32>>>,
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
            echoed: Arc::default(),
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

    /// `echo` runs beyond the first of their text: requests run again
    /// (callers make every text unique, see [`crate::CallStream`]).
    pub fn echo_reruns(&self) -> u64 {
        self.echoed
            .lock()
            .expect("lock")
            .values()
            .map(|runs| u64::from(runs - 1))
            .sum()
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

/// What most tests serve: a [`LabImpl`] named `name` (its replies say which
/// server ran them), counting into `control`.
pub fn lab_server(name: impl Into<String>, control: &LabControl) -> LabServer<LabImpl> {
    LabServer::new(LabImpl {
        name: name.into(),
        control: control.clone(),
    })
}

impl Lab for LabImpl {
    async fn echo(&self, text: String) -> String {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        *self
            .control
            .echoed
            .lock()
            .expect("lock")
            .entry(text.clone())
            .or_default() += 1;
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

    async fn context(&self) -> ContextReport {
        self.control.handled.fetch_add(1, Ordering::SeqCst);
        let request = RequestContext::current().expect("a handler has its context");
        let mut metadata: Vec<(String, String)> = request
            .metadata()
            .iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        metadata.sort();
        ContextReport {
            method: request.method().to_owned(),
            correlation_id: request.correlation_id().map(str::to_owned),
            user_id: request.user_id().map(str::to_owned),
            trace_id: request.trace_id(),
            span_id: request.span_id(),
            time_left_ms: request
                .time_left()
                .map(|left| u64::try_from(left.as_millis()).unwrap_or(u64::MAX)),
            metadata,
            caller: request.extension::<Caller>().map(|caller| caller.0.clone()),
        }
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
        .serve(connection, lab_server(name, control))
        .await
        .expect("serve")
}

/// A [`LabClient`] for `queue` on a new [`Client`].
pub async fn lab_client(connection: &Connection, queue: &TestQueue) -> (Client, LabClient) {
    let client = Client::new(connection).await.expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);
    (client, lab)
}
