//! The client side: calls, their replies, and the sessions they travel on.
//!
//! A [`Client`] keeps one *session* at a time: an AMQP channel with publisher
//! confirms, a reply address (an exclusive reply queue, or direct reply-to)
//! and a consumer on it. Every call is multiplexed over that session; the
//! consumer hands each reply to the call that waits for it. When the session
//! ends (the connection or the channel was lost), the calls in flight on it
//! fail at once, and a new session is set up as soon as the connection is
//! back.
//!
//! | module | what it does |
//! |---|---|
//! | [`call`] | [`Call`](crate::Call), what a generated client method returns, and how its reply is decoded |
//! | [`engine`] | runs each call: checks, registers, publishes, waits, retries on the next session |
//! | [`pending`] | reply matching: the table of calls waiting for their reply |
//! | [`session`] | a session's channels, and the task that hands out replies |
//! | [`presence`] | whether a server consumes a queue (for timeouts and `require_server`) |
//! | [`config`] | what [`ClientBuilder`] sets |
//! | [`intercept`] | client interceptors |
//! | [`observe`] | each call's span and metrics |

pub(crate) mod call;
pub(crate) mod config;
pub(crate) mod engine;
pub(crate) mod intercept;
pub(crate) mod observe;
pub(crate) mod pending;
pub(crate) mod presence;
pub(crate) mod session;

use self::{
    call::{Call, Plain, Raw},
    config::{Config, DEFAULT_CONFIRM_PATIENCE, DEFAULT_TIMEOUT, MIN_CONFIRM_PATIENCE, ReplyTo},
    engine::Engine,
    intercept::{ClientInterceptor, InterceptError, OutgoingCall},
    observe::CallSite,
    pending::{Pending, sweep_deadlines},
    presence::Answers,
    session::ClientSessions,
};
use crate::{
    connection::Connection,
    error::ConnectError,
    metadata::Metadata,
    protocol::{
        DEFAULT_MAX_REQUEST_SIZE,
        args::ArgsEncoder,
        describe::{DESCRIBE_METHOD, ServiceDescription},
    },
    spans::DEFAULT_SPAN_LEVEL,
};
use std::{fmt, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

/// Configures a [`Client`].
///
/// ```no_run
/// # async fn demo(connection: &rpc_runtime::Connection) -> Result<(), rpc_runtime::ConnectError> {
/// use std::time::Duration;
/// use rpc_runtime::{Client, ReplyTo};
/// let client = Client::builder()
///     .timeout(Duration::from_secs(5))
///     .reply_to(ReplyTo::DirectReplyTo)
///     .build(connection)
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientBuilder {
    timeout: Duration,
    reply_to: ReplyTo,
    publisher_confirms: bool,
    confirm_patience: Duration,
    max_request_size: usize,
    require_server: bool,
    metadata: Metadata,
    interceptors: Vec<ClientInterceptor>,
    trace_context: bool,
    span_level: tracing::Level,
    send_user_id: bool,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("timeout", &self.timeout)
            .field("reply_to", &self.reply_to)
            .field("publisher_confirms", &self.publisher_confirms)
            .field("confirm_patience", &self.confirm_patience)
            .field("max_request_size", &self.max_request_size)
            .field("require_server", &self.require_server)
            .field("metadata", &self.metadata)
            .field("interceptors", &self.interceptors.len())
            .field("trace_context", &self.trace_context)
            .field("span_level", &self.span_level)
            .field("send_user_id", &self.send_user_id)
            .finish()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            reply_to: ReplyTo::default(),
            publisher_confirms: true,
            confirm_patience: DEFAULT_CONFIRM_PATIENCE,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            require_server: false,
            metadata: Metadata::new(),
            interceptors: Vec::new(),
            trace_context: true,
            span_level: DEFAULT_SPAN_LEVEL,
            send_user_id: true,
        }
    }
}

impl ClientBuilder {
    /// The timeout of calls that do not set their own (default:
    /// [`DEFAULT_TIMEOUT`], 30 s). It is also the `expiration` of their
    /// requests, so that the broker drops requests nobody waits for any more
    /// (capped at ten years, the most the broker accepts). Any duration is accepted:
    /// `Duration::MAX` waits as good as forever, and a zero timeout fails
    /// every call with [`RpcError::Timeout`](crate::RpcError::Timeout) without sending it.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Where replies are sent (default: [`ReplyTo::ExclusiveQueue`]).
    pub fn reply_to(mut self, reply_to: ReplyTo) -> Self {
        self.reply_to = reply_to;
        self
    }

    /// Whether requests are published with publisher confirms (default: yes).
    ///
    /// With confirms, requests are published `mandatory`: a call to a queue
    /// that does not exist fails at once with
    /// [`RpcError::NoSuchService`](crate::RpcError::NoSuchService), a
    /// request the broker refuses fails with
    /// [`RpcError::Refused`](crate::RpcError::Refused), and a one-way call
    /// resolves once the broker has taken its request.
    ///
    /// Without them, the broker says nothing of a request: a request to a
    /// missing queue is dropped silently. A call to such a queue times out
    /// ([`RpcError::Timeout`](crate::RpcError::Timeout), which says that the
    /// queue does not exist if the broker says so then). A one-way call is
    /// fire-and-forget: `Ok(())` means only that the request was handed to
    /// the connection to be written to its socket, not that the broker or
    /// any queue took it; one to a missing queue returns `Ok(())` too
    /// (unless it requires a server,
    /// [`Call::require_server`](crate::Call::require_server): the broker is
    /// asked first).
    pub fn publisher_confirms(mut self, enabled: bool) -> Self {
        self.publisher_confirms = enabled;
        self
    }

    /// How long a request waits for the broker's confirmation before the
    /// client sends it again on a new channel (default:
    /// [`DEFAULT_CONFIRM_PATIENCE`], 25 s), within the call's timeout.
    ///
    /// A broker normally confirms within milliseconds, and within seconds
    /// while a quorum queue elects a new leader. But RabbitMQ 3.10 has been
    /// seen, after a quorum queue's leader node was frozen and resumed, to
    /// never confirm nor deliver a few requests of a channel on another node:
    /// without this, their callers would wait for their timeout. A request
    /// sent again is a new request: if the first one was only late, not lost,
    /// both run (as when a server dies before acknowledging). Keep it above
    /// two heartbeats, how long a frozen node's connections live and hold
    /// their requests unconfirmed. No effect without publisher confirms.
    /// Values under 100 ms are taken as 100 ms (a confirmation takes at least
    /// a round trip: less would send every request again); `Duration::MAX`
    /// never sends again.
    ///
    /// ```no_run
    /// # async fn demo(connection: &rpc_runtime::Connection) -> Result<(), rpc_runtime::ConnectError> {
    /// use std::time::Duration;
    /// use rpc_runtime::Client;
    /// // Connections with a 5 s heartbeat: a frozen node is dropped in 10 s.
    /// let client = Client::builder()
    ///     .confirm_patience(Duration::from_secs(15))
    ///     .build(connection)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn confirm_patience(mut self, patience: Duration) -> Self {
        self.confirm_patience = patience.max(MIN_CONFIRM_PATIENCE);
        self
    }

    /// The largest request body the client sends, in bytes (default:
    /// [`DEFAULT_MAX_REQUEST_SIZE`], 4 MiB, the servers' default limit).
    /// Larger calls fail at once with [`RpcError::RequestTooLarge`](crate::RpcError::RequestTooLarge).
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.max_request_size = bytes;
        self
    }

    /// Whether calls fail at once with [`RpcError::NoServer`](crate::RpcError::NoServer) when their
    /// request queue exists but no server consumes it (default: no).
    ///
    /// By default such a request waits in the queue until its expiration, so
    /// that a server that is restarting takes it; with this, the client asks
    /// the broker how many consumers the queue has before publishing (an
    /// answer of one or more is trusted for a second, so that calls under
    /// load do not each ask). Per call: [`Call::require_server`](crate::Call::require_server).
    pub fn require_server(mut self, required: bool) -> Self {
        self.require_server = required;
        self
    }

    /// Headers every call of the client carries, after its own (a call's own
    /// [`Call::header`](crate::Call::header) wins over these).
    ///
    /// ```no_run
    /// # async fn demo(connection: &rpc_runtime::Connection) -> anyhow::Result<()> {
    /// use rpc_runtime::{Client, Metadata};
    /// let mut metadata = Metadata::new();
    /// metadata.insert("tenant", "acme")?;
    /// let client = Client::builder().metadata(metadata).build(connection).await?;
    /// # Ok(()) }
    /// ```
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Adds an interceptor: it sees every call before its request is sent
    /// (its service, method, queue and metadata), may add metadata (an auth
    /// token, say), and may refuse the call, which then fails with
    /// [`RpcError::Intercepted`](crate::RpcError::Intercepted) without being
    /// sent. Interceptors run in the order they were added, after the call's
    /// own and the client's metadata are in place.
    ///
    /// ```no_run
    /// # async fn demo(connection: &rpc_runtime::Connection) -> anyhow::Result<()> {
    /// use rpc_runtime::Client;
    /// let client = Client::builder()
    ///     .interceptor(|call| {
    ///         let token = std::env::var("API_TOKEN")?;
    ///         call.metadata().insert("authorization", format!("Bearer {token}"))?;
    ///         Ok(())
    ///     })
    ///     .build(connection)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn interceptor(
        mut self,
        interceptor: impl Fn(&mut OutgoingCall<'_>) -> Result<(), InterceptError>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Whether calls carry W3C trace context, `traceparent` and `tracestate`
    /// (default: yes; see PROTOCOL.md §2).
    pub fn trace_context(mut self, enabled: bool) -> Self {
        self.trace_context = enabled;
        self
    }

    /// The level of the calls' `rpc.call` spans (default:
    /// [`DEFAULT_SPAN_LEVEL`], DEBUG; see its page for why, and what a
    /// recorded span costs).
    ///
    /// ```no_run
    /// # async fn demo(connection: &rpc_runtime::Connection) -> Result<(), rpc_runtime::ConnectError> {
    /// use rpc_runtime::Client;
    /// // Seen by a subscriber at INFO, as the application's own spans.
    /// let client = Client::builder()
    ///     .span_level(tracing::Level::INFO)
    ///     .build(connection)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn span_level(mut self, level: tracing::Level) -> Self {
        self.span_level = level;
        self
    }

    /// Whether calls carry the connection's user as their `user_id`
    /// (default: yes), the identity servers read in
    /// [`RequestContext::user_id`](crate::RequestContext::user_id). The
    /// broker checks it against the connection's user; with the EXTERNAL
    /// mechanism (certificates), the client does not know that user and
    /// sends none, nor for a user name longer than the property holds (255
    /// bytes). After a failover to an address with another user, calls
    /// carry that one.
    pub fn send_user_id(mut self, enabled: bool) -> Self {
        self.send_user_id = enabled;
        self
    }

    /// Creates the client and sets up its first session on `connection`.
    /// Fails if the broker refuses the reply consumer, or if the connection
    /// is reconnecting and does not come back within its connect timeout
    /// ([`ConnectError::Reconnecting`]).
    pub async fn build(self, connection: &Connection) -> Result<Client, ConnectError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let pending = Pending::new(&id);
        let config = Arc::new(Config {
            id,
            timeout: self.timeout,
            reply_to: self.reply_to,
            publisher_confirms: self.publisher_confirms,
            confirm_patience: self.confirm_patience,
            max_request_size: self.max_request_size,
            require_server: self.require_server,
            metadata: self.metadata,
            interceptors: self.interceptors,
            trace_context: self.trace_context,
            span_level: self.span_level,
            send_user_id: self.send_user_id,
        });
        let link = connection.link().await?;
        let first = session::open(&link, &config, &pending, 1)
            .await
            .map_err(|source| ConnectError::Channel {
                what: "set up the client's reply consumer",
                source,
            })?;
        let (published, sessions) = crate::session::watch(first.0.clone());
        let stop = CancellationToken::new();
        tokio::spawn(sweep_deadlines(pending.clone(), stop.clone()));
        let owner = ClientSessions {
            connection: connection.clone(),
            config: config.clone(),
            pending: pending.clone(),
            published,
            stop: stop.clone(),
        };
        tokio::spawn(crate::session::keep(
            owner,
            connection.links().clone(),
            link,
            (1, first),
            stop.clone(),
        ));
        Ok(Client {
            engine: Arc::new(Engine {
                config,
                pending,
                answers: Answers::default(),
                sessions,
                _stop: stop.drop_guard(),
            }),
        })
    }
}

/// A connection-level RPC client: many concurrent calls to any number of
/// services, over one session with one reply address.
///
/// Generated stubs (`FooClient::new(client)`) wrap a `Client`; several stubs
/// can share one. Cloning is cheap and clones share everything: hand clones to
/// as many tasks as you like. The client stops when the last clone is
/// dropped.
///
/// ```no_run
/// # async fn demo() -> anyhow::Result<()> {
/// use rpc_runtime::{Client, Connection};
/// let connection = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// let client = Client::new(&connection).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    pub(crate) engine: Arc<Engine>,
}

impl Client {
    /// A client with the default settings; see [`Client::builder`].
    pub async fn new(connection: &Connection) -> Result<Self, ConnectError> {
        Self::builder().build(connection).await
    }

    /// Starts configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The number of calls waiting for their reply right now.
    pub fn pending_calls(&self) -> usize {
        self.engine.pending.len()
    }

    /// Asks the service on `queue` to describe itself: its methods, their
    /// arguments, return and error types with their docs, and the shapes of
    /// those types (PROTOCOL.md §10). A server that does not answer
    /// (introspection off, or built before it) fails the call with an
    /// `unknown_method` fault.
    ///
    /// ```no_run
    /// # async fn demo(client: rpc_runtime::Client) -> Result<(), rpc_runtime::RpcError> {
    /// let description = client.describe("rpc_queue").await?;
    /// for method in &description.methods {
    ///     println!("{}: {} argument(s)", method.name, method.args.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn describe(&self, queue: &str) -> Call<Plain<ServiceDescription>> {
        static SITE: CallSite = CallSite::new("rpc", DESCRIBE_METHOD);
        Call::new(self, &Arc::from(queue), &SITE, ArgsEncoder::new(0).finish())
    }

    /// A call to `method` of the service on `queue`, both named at run time,
    /// with its arguments already encoded: `args` is the request body, a
    /// MessagePack array of the arguments in order (PROTOCOL.md §2, §3). The
    /// reply comes back encoded too ([`RawReply`](crate::RawReply)). For tools and gateways
    /// that learn a service from its description ([`Client::describe`])
    /// rather than from its trait; everything else of a call (timeout,
    /// headers, one-way, spans, metrics) is as for a generated client's.
    ///
    /// `service` names the service in the call's span and metrics only.
    /// Each distinct `service` and `method` pair is registered once, for the
    /// life of the process (as its metrics are): name methods from a
    /// description or a list, not from unbounded input.
    ///
    /// ```no_run
    /// # async fn demo(client: rpc_runtime::Client) -> Result<(), rpc_runtime::RpcError> {
    /// use rpc_runtime::RawReply;
    /// // [30]: one argument, the positive fixint 30.
    /// let args = vec![0x91, 30];
    /// match client.call_raw("rpc_queue", "Fibonacci", "fib", args).await? {
    ///     RawReply::Ok(value) => println!("{} bytes of MessagePack", value.len()),
    ///     RawReply::Err(error) => println!("the method's own error: {error:?}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn call_raw(&self, queue: &str, service: &str, method: &str, args: Vec<u8>) -> Call<Raw> {
        let site = CallSite::interned(service, method);
        Call::new(self, &Arc::from(queue), site, Ok(args))
    }

    /// The timeout of calls that do not set their own.
    pub fn default_timeout(&self) -> Duration {
        self.engine.config.timeout
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.engine.config;
        f.debug_struct("Client")
            .field("id", &config.id)
            .field("timeout", &config.timeout)
            .field("reply_to", &config.reply_to)
            .field("pending_calls", &self.pending_calls())
            .finish()
    }
}
