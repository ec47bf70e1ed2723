//! The server side: consuming a request queue and running each request.
//!
//! A server keeps one *session* at a time on its connection: a channel with
//! `basic_qos(prefetch)`, its request queue declared, and a consumer on it.
//! Every delivery is handled in its own task, so up to `prefetch` requests
//! run at once; [`ack_policy`](crate::ack_policy) decides what becomes of each
//! request. When the session ends with its connection, the requests in flight
//! go back to the queue (they were not acknowledged) and a new session starts
//! on the next connection.

use crate::{
    ack_policy::{Acknowledgements, Disposition},
    admission::{Admission, DEFAULT_MAX_REQUEST_SIZE, ReplyToPolicy, Rules},
    clock::instant_after,
    connection::{Connection, Live},
    error::{Fault, FaultKind, ServeError},
    log_budget::LogBudget,
    protocol::{CONTENT_TYPE, MAX_QUEUE_NAME, encode_fault},
    service::{RequestContext, Service},
};
use futures_util::{FutureExt, StreamExt};
use lapin::{
    BasicProperties, Channel, Consumer,
    message::Delivery,
    options::{
        BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        QueueDeclareOptions,
    },
    types::{AMQPValue, DeliveryTag, FieldTable, ShortString},
};
use std::{
    any::Any,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    task::{AbortHandle, JoinHandle, JoinSet},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{error, info, warn};

/// How many requests a server receives ahead, and so runs at once, unless
/// configured otherwise.
pub const DEFAULT_PREFETCH: u16 = 32;

/// How long a graceful shutdown waits for the requests in flight unless
/// configured otherwise.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The kind of request queue a server declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueType {
    /// A durable classic queue (the default).
    #[default]
    Classic,
    /// A quorum queue: replicated across a cluster's nodes.
    Quorum,
}

/// Serves a [`Service`] on its request queue.
///
/// ```no_run
/// # use rpc_runtime::rpc_service;
/// # #[rpc_service]
/// # pub trait Echo { async fn echo(&self, text: String) -> String; }
/// # struct Parrot;
/// # impl Echo for Parrot { async fn echo(&self, text: String) -> String { text } }
/// # async fn demo(connection: rpc_runtime::Connection) -> Result<(), rpc_runtime::ServeError> {
/// use rpc_runtime::Server;
/// let server = Server::builder()
///     .prefetch(64)
///     .serve(&connection, EchoServer::new(Parrot))
///     .await?;
/// // ... until it is time to stop:
/// server.shutdown().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server(());

impl Server {
    /// Starts configuring a server.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Serves `service` on `connection` with the default settings.
    pub async fn serve<S: Service>(
        connection: &Connection,
        service: S,
    ) -> Result<ServerHandle, ServeError> {
        Self::builder().serve(connection, service).await
    }
}

/// Configures how a service is served.
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    queue: Option<String>,
    prefetch: u16,
    queue_type: QueueType,
    shutdown_grace: Duration,
    rules: Rules,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            queue: None,
            prefetch: DEFAULT_PREFETCH,
            queue_type: QueueType::default(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            rules: Rules {
                reply_to: ReplyToPolicy::default(),
                max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            },
        }
    }
}

impl ServerBuilder {
    /// Consumes `queue` instead of the service's default queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = Some(queue.into());
        self
    }

    /// How many requests the broker sends ahead (`basic_qos`), which is also
    /// how many run at once (default: [`DEFAULT_PREFETCH`], 32; at least 1).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// The kind of request queue to declare (default: a durable classic
    /// queue).
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// How long [`ServerHandle::shutdown`] waits for the requests in flight
    /// before abandoning them to the broker, which redelivers them (default:
    /// [`DEFAULT_SHUTDOWN_GRACE`], 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Which `reply_to` addresses the server replies to (default: direct
    /// reply-to and this framework's reply queues; see [`ReplyToPolicy`]).
    pub fn reply_to_policy(mut self, policy: ReplyToPolicy) -> Self {
        self.rules.reply_to = policy;
        self
    }

    /// The largest request body the server accepts, in bytes (default:
    /// [`DEFAULT_MAX_REQUEST_SIZE`], 4 MiB). Larger requests get a
    /// `request_too_large` fault without being decoded.
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.rules.max_request_size = bytes;
        self
    }

    /// Declares the request queue, starts consuming it, and returns a handle
    /// to the running server. Fails if the broker refuses the queue (for
    /// example, it exists with other settings).
    pub async fn serve<S: Service>(
        self,
        connection: &Connection,
        service: S,
    ) -> Result<ServerHandle, ServeError> {
        let queue = self.queue.unwrap_or_else(|| S::DEFAULT_QUEUE.to_owned());
        if queue.len() > MAX_QUEUE_NAME {
            return Err(ServeError::InvalidQueueName { queue });
        }
        let config = Arc::new(Config {
            queue,
            prefetch: self.prefetch,
            queue_type: self.queue_type,
            shutdown_grace: self.shutdown_grace,
            service: S::NAME,
        });
        let live = connection.live().await?;
        let session = Session::open(&live, &config)
            .await
            .map_err(|source| ServeError::Setup {
                queue: config.queue.clone(),
                source,
            })?;
        info!(service = S::NAME, queue = %config.queue, prefetch = config.prefetch, "serving");
        let shutdown = CancellationToken::new();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let serving = Serving {
            handling: Arc::new(Handling {
                service,
                rules: self.rules,
                faults: LogBudget::default(),
            }),
            connection: connection.clone(),
            config: config.clone(),
            abandon: CancellationToken::new(),
            shutdown: shutdown.clone(),
            in_flight: in_flight.clone(),
        };
        let task = tokio::spawn(serving.run(live, session));
        Ok(ServerHandle {
            queue: config.queue.clone(),
            shutdown,
            in_flight,
            task: Some(task),
        })
    }
}

/// A running server. Dropping it stops the server abruptly (requests in
/// flight are abandoned to the broker, which redelivers them); call
/// [`ServerHandle::shutdown`] to stop gracefully.
#[must_use = "dropping the handle stops the server"]
pub struct ServerHandle {
    queue: String,
    shutdown: CancellationToken,
    in_flight: Arc<AtomicUsize>,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// The request queue being served.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// How many requests are being handled right now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Stops gracefully: stops consuming, requeues the requests received but
    /// not started, lets the requests in flight finish and send their replies
    /// (for up to the shutdown grace), then closes the channel.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take()
            && let Err(error) = task.await
            && error.is_panic()
        {
            error!("the server task panicked during shutdown");
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            // Aborting the task drops its handlers, which aborts them; the
            // channel closes with them, handing their requests back to the
            // broker.
            task.abort();
        }
    }
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("queue", &self.queue)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

struct Config {
    queue: String,
    prefetch: u16,
    queue_type: QueueType,
    shutdown_grace: Duration,
    service: &'static str,
}

/// One channel consuming the request queue.
struct Session {
    /// The session's channel, with its acknowledgements. Shared by the
    /// handlers: a lapin `Channel` is some fifteen reference counts, one
    /// `Arc` is one.
    acknowledgements: Arc<Acknowledgements>,
    consumer: Consumer,
}

impl Session {
    fn channel(&self) -> &Channel {
        self.acknowledgements.channel()
    }

    async fn open(live: &Live, config: &Config) -> lapin::Result<Session> {
        let channel = live.amqp.create_channel().await?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        let mut arguments = FieldTable::default();
        if config.queue_type == QueueType::Quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        channel
            .queue_declare(
                config.queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        let consumer = channel
            .basic_consume(
                config.queue.as_str().into(),
                ShortString::default(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Session {
            acknowledgements: Arc::new(Acknowledgements::new(channel)),
            consumer,
        })
    }
}

/// The task that serves one service: consumes requests, spawns their
/// handlers, and sets a new session up when one ends.
struct Serving<S> {
    handling: Arc<Handling<S>>,
    connection: Connection,
    config: Arc<Config>,
    /// Cancelled to abort the handlers of draining sessions when the
    /// shutdown grace elapses.
    abandon: CancellationToken,
    shutdown: CancellationToken,
    in_flight: Arc<AtomicUsize>,
}

enum Ended {
    Lost,
    Shutdown,
}

impl<S: Service> Serving<S> {
    async fn run(self, mut live: Live, first: Session) {
        // Sessions that ended while their channel stayed open (the broker
        // cancelled the consumer): their handlers may still reply, then the
        // channel is closed.
        let mut draining = JoinSet::new();
        let mut session = Some(first);
        let mut failures = 0u32;
        loop {
            if let Some(mut current) = session.take() {
                failures = 0;
                let mut handlers = Handlers::new();
                match self.consume(&mut current, &mut handlers).await {
                    Ended::Shutdown => {
                        self.shut_down(current, handlers, draining).await;
                        return;
                    }
                    Ended::Lost if current.channel().status().connected() => {
                        let abandon = self.abandon.clone();
                        draining.spawn(async move {
                            tokio::select! {
                                () = handlers.wait() => {}
                                () = abandon.cancelled() => handlers.abort(),
                            }
                            let _ = current
                                .channel()
                                .close(200, "consumer cancelled".into())
                                .await;
                        });
                    }
                    // The channel is gone, and with it the requests in
                    // flight, which the broker redelivers: their handlers
                    // could neither reply nor acknowledge, and would run
                    // alongside the redeliveries.
                    Ended::Lost => handlers.abort(),
                }
            }
            // A session ends with its connection, or alone (its channel
            // closed by the broker): set the next one up accordingly.
            live = match self
                .connection
                .live_for_next_session(&live, failures, &self.shutdown)
                .await
            {
                Some(next) => next,
                None => break,
            };
            match Session::open(&live, &self.config).await {
                Ok(next) => {
                    info!(service = self.config.service, queue = %self.config.queue, "serving again");
                    session = Some(next);
                }
                Err(error) => {
                    failures += 1;
                    warn!(%error, queue = %self.config.queue, "could not set up the request consumer; retrying");
                }
            }
        }
        // Shut down while no session was up: only draining handlers remain.
        let deadline = instant_after(self.config.shutdown_grace);
        self.finish_draining(draining, deadline).await;
    }

    async fn consume(&self, session: &mut Session, handlers: &mut Handlers) -> Ended {
        // Raced once against the whole loop rather than per request: a
        // `select!` per request would move each delivery once more and poll
        // the token each time. Shutdown, polled first, still stops the loop
        // before it takes another request.
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Ended::Shutdown,
            ended = self.spawn_handlers(session, handlers) => ended,
        }
    }

    /// Hands every request to a handler of its own until the consumer ends.
    async fn spawn_handlers(&self, session: &mut Session, handlers: &mut Handlers) -> Ended {
        loop {
            match session.consumer.next().await {
                Some(Ok(delivery)) => {
                    session.acknowledgements.received(delivery.delivery_tag);
                    handlers.spawn(handle(
                        self.handling.clone(),
                        session.acknowledgements.clone(),
                        delivery,
                        InFlight::enter(&self.in_flight),
                    ));
                }
                Some(Err(error)) => {
                    if !self.connection.is_closing() {
                        warn!(%error, queue = %self.config.queue, "lost the request consumer; its requests in flight will be redelivered");
                    }
                    return Ended::Lost;
                }
                None => {
                    if !self.connection.is_closing() {
                        warn!(queue = %self.config.queue, "the broker cancelled the request consumer (was the queue deleted?)");
                    }
                    return Ended::Lost;
                }
            }
        }
    }

    /// Stops consuming, requeues what was received but not started, and
    /// lets the requests in flight finish, all within the shutdown grace:
    /// past it, what is left is abandoned to the broker, which redelivers it.
    async fn shut_down(&self, mut session: Session, handlers: Handlers, draining: JoinSet<()>) {
        info!(queue = %self.config.queue, in_flight = handlers.len(), "shutting down");
        let deadline = instant_after(self.config.shutdown_grace);
        let tag = session.consumer.tag();
        let cancel = session
            .channel()
            .basic_cancel(tag, BasicCancelOptions::default());
        if let Ok(Ok(())) = tokio::time::timeout_at(deadline, cancel).await {
            // After cancel-ok the stream ends; what it still holds was
            // received but not started: back to the queue with it.
            let requeue = async {
                while let Some(Ok(delivery)) = session.consumer.next().await {
                    Disposition::Requeue.apply(&delivery.acker).await;
                }
            };
            let _ = tokio::time::timeout_at(deadline, requeue).await;
        }
        if tokio::time::timeout_at(deadline, handlers.wait())
            .await
            .is_err()
        {
            self.abandon(handlers.len());
            handlers.abort();
            handlers.wait().await;
        }
        self.finish_draining(draining, deadline).await;
        let close = session.channel().close(200, "server shut down".into());
        let _ = tokio::time::timeout_at(deadline.max(Instant::now() + CLOSE_GRACE), close).await;
    }

    /// Waits for the draining sessions until `deadline`, then abandons their
    /// handlers.
    async fn finish_draining(&self, mut draining: JoinSet<()>, deadline: Instant) {
        let all_done = async { while draining.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, all_done).await.is_err() {
            self.abandon(draining.len());
            while draining.join_next().await.is_some() {}
        }
    }

    /// Aborts the handlers of draining sessions (each aborts its own, see
    /// `run`): their requests, unacknowledged, go back to the broker when
    /// the channel closes.
    fn abandon(&self, count: usize) {
        warn!(
            count,
            "shutdown grace elapsed; abandoning the requests still running to the broker"
        );
        self.abandon.cancel();
    }
}

/// Waits until the process is asked to stop, by Ctrl-C (SIGINT) or, on Unix,
/// SIGTERM (what `kill`, systemd, Docker and Kubernetes send), then shuts
/// every server down gracefully, together (see [`ServerHandle::shutdown`]):
/// each stops taking requests, hands back those it has not started, and
/// finishes those in flight within its grace.
///
/// A second signal while they finish stops them at once: the requests still
/// running are abandoned to the broker, which redelivers them when the
/// connection closes (as it does when the process exits). Fails only if the
/// signal handlers cannot be installed, which it does on its first poll,
/// before it waits.
///
/// ```no_run
/// # use rpc_runtime::rpc_service;
/// # #[rpc_service]
/// # pub trait Echo { async fn echo(&self, text: String) -> String; }
/// # struct Parrot;
/// # impl Echo for Parrot { async fn echo(&self, text: String) -> String { text } }
/// # async fn demo() -> anyhow::Result<()> {
/// use rpc_runtime::{Connection, Server};
/// let connection = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// let echo = Server::serve(&connection, EchoServer::new(Parrot)).await?;
/// let shout = Server::builder()
///     .queue("shout")
///     .serve(&connection, EchoServer::new(Parrot))
///     .await?;
/// rpc_runtime::shutdown_on_signal([echo, shout]).await?;
/// connection.close().await;
/// # Ok(()) }
/// ```
pub async fn shutdown_on_signal(
    servers: impl IntoIterator<Item = ServerHandle>,
) -> std::io::Result<()> {
    let mut signals = Signals::install()?;
    let servers: Vec<ServerHandle> = servers.into_iter().collect();
    let signal = signals.next().await;
    info!(
        signal,
        servers = servers.len(),
        "shutting down gracefully (send the signal again to stop at once)"
    );
    let tasks: Vec<AbortHandle> = servers
        .iter()
        .filter_map(|server| server.task.as_ref().map(JoinHandle::abort_handle))
        .collect();
    let all_shut_down =
        futures_util::future::join_all(servers.into_iter().map(ServerHandle::shutdown));
    tokio::select! {
        _ = all_shut_down => {}
        signal = signals.next() => {
            warn!(
                signal,
                "stopping at once: the requests still running go back to the broker when the \
                 connection closes"
            );
            for task in tasks {
                task.abort();
            }
        }
    }
    Ok(())
}

/// The signals that ask a process to stop.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers at once, so that a signal that comes before
    /// anyone waits for it is not lost (nor kills the process).
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the next signal; returns its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        }
    }
}

/// How long closing the channel may take after the shutdown grace.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The handlers of one session: tracked, to wait for them, and abortable.
///
/// Cheaper than a `JoinSet` (whose bookkeeping cost a few thousand
/// instructions per request) and than wrapping each handler in a
/// cancellation future (which costs more, on every poll): a task tracker is
/// one counter, and the abort handles live in a vector only the consumer
/// touches, pruned as it grows.
struct Handlers {
    tracker: TaskTracker,
    running: Vec<AbortHandle>,
}

impl Handlers {
    fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            running: Vec::new(),
        }
    }

    fn spawn(&mut self, handler: impl Future<Output = ()> + Send + 'static) {
        if self.running.len() == self.running.capacity() {
            self.running.retain(|handle| !handle.is_finished());
        }
        // Boxed once here, so that the layers of spawning move a pointer
        // rather than the whole future, several times.
        let handler = Box::pin(handler);
        self.running
            .push(self.tracker.spawn(handler).abort_handle());
    }

    fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Waits until every handler is done (or aborted).
    async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn abort(&self) {
        for handle in &self.running {
            handle.abort();
        }
    }
}

impl Drop for Handlers {
    /// Handlers die with their session's task: dropping the server aborts
    /// them, handing their requests back to the broker.
    fn drop(&mut self) {
        self.abort();
    }
}

/// Counts a request as in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Handles one request: checks it (see [`admission`](crate::admission)),
/// runs its method, publishes the reply, and settles the request (see
/// [`ack_policy`](crate::ack_policy)).
///
/// A function returning an `async move` block rather than an `async fn`: the
/// latter stores its arguments twice, and the future is moved on its way to
/// the executor.
fn handle<S: Service>(
    handling: Arc<Handling<S>>,
    acknowledgements: Arc<Acknowledgements>,
    delivery: Delivery,
    in_flight: InFlight,
) -> impl Future<Output = ()> + Send + 'static {
    let Delivery {
        delivery_tag,
        properties,
        data,
        acker,
        redelivered,
        ..
    } = delivery;
    // Shared with the handler's RequestContext rather than copied.
    let properties = Arc::new(properties);
    async move {
        let _in_flight = in_flight;
        let request = Received {
            delivery_tag,
            properties,
            data,
            acker,
            redelivered,
        };
        handle_request(&handling, &acknowledgements, request).await;
    }
}

/// A delivered request, taken apart.
struct Received {
    delivery_tag: DeliveryTag,
    properties: Arc<BasicProperties>,
    data: Vec<u8>,
    acker: lapin::Acker,
    redelivered: bool,
}

/// What every handler of a server shares.
struct Handling<S> {
    service: S,
    rules: Rules,
    /// The budget of the warnings of refused requests and faults.
    faults: LogBudget,
}

impl<S: Service> Handling<S> {
    /// Logs, once, at WARN and within the server's budget (see
    /// [`log_budget`](crate::log_budget)), a request that was refused or got a
    /// fault: with its method, correlation id and reason, never its body.
    fn log_refused(&self, properties: &BasicProperties, reason: &dyn fmt::Display) {
        let Some(suppressed) = self.faults.take() else {
            return;
        };
        let method = properties.kind().as_ref().map(ShortString::as_str);
        let correlation_id = properties
            .correlation_id()
            .as_ref()
            .map(ShortString::as_str);
        let one_way = properties.reply_to().is_none();
        warn!(
            service = S::NAME,
            method, correlation_id, one_way, suppressed, "a request could not run: {reason}"
        );
    }

    /// Logs a method's panic at ERROR, within the same budget.
    fn log_panic(&self, properties: &BasicProperties, panic: &str) {
        let Some(suppressed) = self.faults.take() else {
            return;
        };
        let method = properties.kind().as_ref().map(ShortString::as_str);
        let correlation_id = properties
            .correlation_id()
            .as_ref()
            .map(ShortString::as_str);
        error!(
            service = S::NAME,
            method,
            correlation_id,
            suppressed,
            panic,
            "a service method panicked; the caller gets a handler_panicked fault"
        );
    }
}

async fn handle_request<S: Service>(
    handling: &Handling<S>,
    acknowledgements: &Acknowledgements,
    request: Received,
) {
    let Received {
        delivery_tag,
        properties,
        data,
        acker,
        redelivered,
    } = request;
    let outcome = match handling.rules.admit(&properties, data.len()) {
        Admission::Refuse { reply_to } => {
            handling.log_refused(
                &properties,
                &format_args!(
                    "its reply_to `{reply_to}` is not an allowed reply address (see \
                     ReplyToPolicy); rejected without a reply"
                ),
            );
            acknowledgements
                .settle(delivery_tag, &acker, Disposition::Reject)
                .await;
            return;
        }
        Admission::Fault(fault) => Err(fault),
        Admission::Run { method } => {
            let context = RequestContext {
                properties: properties.clone(),
                redelivered,
            };
            let run = context.scope(handling.service.dispatch(method, &data));
            AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let (fault, message) = panicked(method, panic);
                    handling.log_panic(&properties, &message);
                    Err(fault)
                })
        }
    };
    if let Err(fault) = &outcome
        && fault.kind() != &FaultKind::HandlerPanicked
    {
        handling.log_refused(&properties, &fault.for_log());
    }
    if let Some(reply_to) = properties.reply_to() {
        let fault_body;
        let body = match &outcome {
            Ok(body) => body,
            Err(fault) => {
                fault_body = encode_fault(fault);
                &fault_body
            }
        };
        let mut reply_properties =
            BasicProperties::default().with_content_type(CONTENT_TYPE.into());
        if let Some(correlation_id) = properties.correlation_id() {
            reply_properties = reply_properties.with_correlation_id(correlation_id.clone());
        }
        // Awaited before the acknowledgement: lapin sends acknowledgements
        // ahead of queued publishes, so only a reply already written is
        // surely ahead of it.
        let published = acknowledgements
            .channel()
            .basic_publish(
                ShortString::default(),
                reply_to.clone(),
                BasicPublishOptions::default(),
                body,
                reply_properties,
            )
            .await;
        if let Err(error) = published {
            warn!(%error, "could not publish a reply; the request will be redelivered");
            return;
        }
    }
    let disposition = Disposition::after_handling(&outcome);
    acknowledgements
        .settle(delivery_tag, &acker, disposition)
        .await;
}

/// The fault of a method that panicked, and the panic's message (for the
/// server's log only: it may say more than a caller should see).
fn panicked(method: &str, panic: Box<dyn Any + Send>) -> (Fault, String) {
    let message = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    let fault = Fault::new(
        FaultKind::HandlerPanicked,
        format!("the method `{method}` panicked; see the server's log"),
    );
    (fault, message)
}
