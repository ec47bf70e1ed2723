//! The server side: serving a service on its request queue.
//!
//! A server keeps one *session* at a time on its connection (see
//! [`session`](crate::session)): a channel with `basic_qos(prefetch)`, its
//! request queue declared, and a consumer on it. Each request then goes
//! through the same steps, each in its own module:
//!
//! | module | what it does |
//! |---|---|
//! | [`consume`] | the sessions: a handler task per request (a lone one first polled in the consumer's task on one worker), and how a session ends (lost, or shut down gracefully) |
//! | [`handle`] | one request: checked, skipped past its deadline, intercepted, run, answered, logged |
//! | [`context`] | the [`RequestContext`](crate::RequestContext) a method runs in |
//! | [`observe`] | its span and metrics |
//! | [`admission`] | what a request must look like to run |
//! | [`service`] | the dispatcher `#[rpc_service]` generates ([`Service`](crate::Service)) |
//! | [`introspection`] | the service's description, the answer to `rpc.describe` |
//! | [`shape_trace`] | what a type's values look like, traced from its `Deserialize` |
//! | [`respond`] | the one writer on the channel: the reply, then the acknowledgement |
//! | [`ack_policy`] | what each outcome means for the request, and acknowledgements in batches |
//! | [`log_budget`] | logs that input cannot flood |
//! | [`signal`] | shutting every server down on SIGINT or SIGTERM |

pub(crate) mod ack_policy;
pub(crate) mod admission;
pub(crate) mod consume;
pub(crate) mod context;
pub(crate) mod direct_replies;
pub(crate) mod handle;
pub(crate) mod introspection;
pub(crate) mod log_budget;
pub(crate) mod observe;
pub(crate) mod respond;
pub(crate) mod service;
pub(crate) mod shape_trace;
pub(crate) mod signal;

use self::{
    admission::Rules,
    consume::{ServerSessions, Session},
    context::RequestContext,
    direct_replies::DirectReplies,
    handle::{Handling, Interceptor},
    log_budget::LogBudget,
    observe::ServerMetrics,
    service::Service,
};
use crate::{
    connection::Connection,
    error::ServeError,
    protocol::fault::Fault,
    protocol::{
        DEFAULT_MAX_REQUEST_SIZE, is_queue_name, reply::encode_ok, reply_address::ReplyToPolicy,
    },
};
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

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
#[derive(Clone)]
pub struct ServerBuilder {
    queue: Option<String>,
    prefetch: u16,
    queue_type: QueueType,
    delivery_limit: Option<u32>,
    dead_letter_queue: Option<String>,
    shutdown_grace: Duration,
    rules: Rules,
    interceptors: Vec<Interceptor>,
    span_level: tracing::Level,
    introspection: bool,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .field("queue_type", &self.queue_type)
            .field("delivery_limit", &self.delivery_limit)
            .field("dead_letter_queue", &self.dead_letter_queue)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("rules", &self.rules)
            .field("interceptors", &self.interceptors.len())
            .field("span_level", &self.span_level)
            .field("introspection", &self.introspection)
            .finish()
    }
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self {
            queue: None,
            prefetch: DEFAULT_PREFETCH,
            queue_type: QueueType::default(),
            delivery_limit: None,
            dead_letter_queue: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            rules: Rules {
                reply_to: ReplyToPolicy::default(),
                max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            },
            interceptors: Vec::new(),
            span_level: crate::spans::DEFAULT_SPAN_LEVEL,
            introspection: true,
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

    /// How many times a request may be delivered again (its server died, or
    /// lost its connection, before acknowledging it) before the broker sets
    /// it aside: to [`dead_letter_queue`](Self::dead_letter_queue) if there
    /// is one, else it is dropped. A request that kills every server that
    /// takes it (a "poison pill") then costs `limit + 1` servers a restart,
    /// not the whole fleet one after another. Quorum queues only
    /// (`x-delivery-limit`); the caller of such a request gets no reply
    /// (it times out).
    pub fn delivery_limit(mut self, limit: u32) -> Self {
        self.delivery_limit = Some(limit);
        self
    }

    /// A queue the broker moves dead-lettered requests to: those past their
    /// [`delivery_limit`](Self::delivery_limit), and those a server rejects
    /// (faults, a `reply_to` it may not use, a passed deadline). The server
    /// declares it (durable) and sets the request queue's
    /// `x-dead-letter-exchange` (the default exchange) and
    /// `x-dead-letter-routing-key` (this queue). Each dead-lettered request
    /// keeps its properties and gains an `x-death` header saying why.
    pub fn dead_letter_queue(mut self, queue: impl Into<String>) -> Self {
        self.dead_letter_queue = Some(queue.into());
        self
    }

    /// How long [`ServerHandle::shutdown`] waits for the requests in flight
    /// before abandoning them to the broker, which redelivers them (default:
    /// [`DEFAULT_SHUTDOWN_GRACE`], 30 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The level of the requests' `rpc.request` spans, in which handlers
    /// run (default: [`DEFAULT_SPAN_LEVEL`](crate::DEFAULT_SPAN_LEVEL),
    /// DEBUG; see its page for why, and what a recorded span costs). At a
    /// level the application records, a handler's own logs carry its
    /// request's service, method, correlation id and trace ids.
    ///
    /// ```
    /// use rpc_runtime::Server;
    /// let builder = Server::builder().span_level(tracing::Level::INFO);
    /// # let _ = builder;
    /// ```
    pub fn span_level(mut self, level: tracing::Level) -> Self {
        self.span_level = level;
        self
    }

    /// Whether the server answers `rpc.describe`, the reserved method that
    /// asks a service for its methods and types (default: yes; PROTOCOL.md
    /// §10). Off, such a request gets an `unknown_method` fault, as from a
    /// server built before introspection. Interceptors see it as any other
    /// request, so one can refuse it to callers without a token.
    ///
    /// ```
    /// use rpc_runtime::Server;
    /// let builder = Server::builder().introspection(false);
    /// # let _ = builder;
    /// ```
    pub fn introspection(mut self, enabled: bool) -> Self {
        self.introspection = enabled;
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

    /// Adds an interceptor: it sees each request's [`RequestContext`] (its
    /// method, metadata, caller identity, deadline) before the method runs,
    /// may attach extensions for the handler
    /// ([`RequestContext::insert_extension`]), and may refuse the request
    /// with a fault, which the caller receives (for example
    /// [`FaultKind::Unauthenticated`](crate::FaultKind::Unauthenticated) or
    /// [`FaultKind::PermissionDenied`](crate::FaultKind::PermissionDenied)).
    /// Interceptors run in the order they were added; the first fault ends
    /// the request. One that panics is caught as a method's panic is: the
    /// caller gets a `handler_panicked` fault, the request is rejected, and
    /// the server goes on.
    ///
    /// ```no_run
    /// # use rpc_runtime::rpc_service;
    /// # #[rpc_service]
    /// # pub trait Echo { async fn echo(&self, text: String) -> String; }
    /// # struct Parrot;
    /// # impl Echo for Parrot { async fn echo(&self, text: String) -> String { text } }
    /// # async fn demo(connection: rpc_runtime::Connection) -> Result<(), rpc_runtime::ServeError> {
    /// use rpc_runtime::{Fault, FaultKind, Server};
    ///
    /// /// Who called, as the handler reads it with `RequestContext::extension`.
    /// struct Caller(String);
    ///
    /// let server = Server::builder()
    ///     .interceptor(|request| {
    ///         let token = request.header("authorization").ok_or_else(|| {
    ///             Fault::new(FaultKind::Unauthenticated, "no `authorization` header".into())
    ///         })?;
    ///         if token != "Bearer let-me-in" {
    ///             return Err(Fault::new(FaultKind::PermissionDenied, "bad token".into()));
    ///         }
    ///         let caller = request.user_id().unwrap_or("anonymous").to_owned();
    ///         request.insert_extension(Caller(caller));
    ///         Ok(())
    ///     })
    ///     .serve(&connection, EchoServer::new(Parrot))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn interceptor(
        mut self,
        interceptor: impl Fn(&mut RequestContext) -> Result<(), Fault> + Send + Sync + 'static,
    ) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Declares the request queue, starts consuming it, and returns a handle
    /// to the running server. Fails if the broker refuses the queue (for
    /// example, it exists with other settings), or if the connection is
    /// reconnecting and does not come back within its connect timeout
    /// ([`ConnectError::Reconnecting`](crate::ConnectError::Reconnecting)).
    pub async fn serve<S: Service>(
        self,
        connection: &Connection,
        service: S,
    ) -> Result<ServerHandle, ServeError> {
        let queue = self.queue.unwrap_or_else(|| S::DEFAULT_QUEUE.to_owned());
        // `amq.` names are the broker's: it refuses to declare them (403).
        let is_queue_name = |name: &str| is_queue_name(name) && !name.starts_with("amq.");
        if !is_queue_name(&queue) {
            return Err(ServeError::InvalidQueueName { queue });
        }
        if self.delivery_limit.is_some() && self.queue_type != QueueType::Quorum {
            return Err(ServeError::Config {
                message: "a delivery limit needs a quorum request queue: add \
                          `.queue_type(QueueType::Quorum)`"
                    .to_owned(),
            });
        }
        if let Some(dead_letters) = &self.dead_letter_queue
            && (!is_queue_name(dead_letters) || *dead_letters == queue)
        {
            return Err(ServeError::InvalidQueueName {
                queue: dead_letters.clone(),
            });
        }
        let config = Arc::new(Config {
            queue,
            prefetch: self.prefetch,
            queue_type: self.queue_type,
            delivery_limit: self.delivery_limit,
            dead_letter_queue: self.dead_letter_queue,
            shutdown_grace: self.shutdown_grace,
            service: S::NAME,
        });
        let link = connection.link().await?;
        let session = Session::open(&link, &config)
            .await
            .map_err(|source| ServeError::Setup {
                queue: config.queue.clone(),
                source,
            })?;
        info!(service = S::NAME, queue = %config.queue, prefetch = config.prefetch, "serving");
        let shutdown = CancellationToken::new();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let sessions = ServerSessions {
            handling: Arc::new(Handling {
                service,
                queue: config.queue.clone(),
                rules: self.rules,
                interceptors: self.interceptors,
                span_level: self.span_level,
                description: if self.introspection {
                    S::description().and_then(|description| encode_ok(&description).ok())
                } else {
                    None
                },
                metrics: ServerMetrics::register(S::NAME, S::METHODS),
                faults: LogBudget::default(),
                direct_replies: DirectReplies::default(),
            }),
            connection: connection.clone(),
            config: config.clone(),
            abandon: CancellationToken::new(),
            shutdown: shutdown.clone(),
            in_flight: in_flight.clone(),
            draining: JoinSet::new(),
        };
        let task = tokio::spawn(crate::session::keep(
            sessions,
            connection.links().clone(),
            link,
            (1, session),
            shutdown.clone(),
        ));
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
    /// (for up to the shutdown grace), then closes the channel. If the
    /// channel is lost meanwhile, the handlers still running are aborted at
    /// once: they could no longer reply, and the broker redelivers their
    /// requests to other servers.
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

/// How a server is configured: what [`ServerBuilder`] sets.
pub(crate) struct Config {
    pub(crate) queue: String,
    pub(crate) prefetch: u16,
    pub(crate) queue_type: QueueType,
    pub(crate) delivery_limit: Option<u32>,
    pub(crate) dead_letter_queue: Option<String>,
    pub(crate) shutdown_grace: Duration,
    pub(crate) service: &'static str,
}
