//! The client side: publishing requests and receiving their replies.
//!
//! A [`Client`] keeps one *session* at a time: an AMQP channel with publisher
//! confirms, a reply address (an exclusive reply queue, or direct reply-to)
//! and a consumer on it. Every call is multiplexed over that session; the
//! consumer hands each reply to the call that waits for it (see
//! [`pending`](crate::pending)). When the session ends — the connection or the
//! channel was lost — the calls in flight on it fail at once, and a new
//! session is set up as soon as the connection is back.

use crate::{
    call::CallSpec,
    connection::{Connection, Live},
    error::{ConnectError, RpcError},
    pending::{Pending, SessionEnded},
    protocol::{CONTENT_TYPE, DIRECT_REPLY_TO, REPLY_QUEUE_PREFIX},
};
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm,
    options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::{FieldTable, ShortString},
};
use std::{fmt, sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{debug, warn};

/// The timeout of a call when neither the client nor the call sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where servers send the replies to a client's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplyTo {
    /// One exclusive, auto-deleted queue per client (per session), named
    /// `rpc-reply.<client id>.<session>`. The default: measured faster than
    /// direct reply-to at many calls in flight, and free of the RabbitMQ 3.10
    /// cluster bug where direct reply-to breaks the responder's connection
    /// when the requester's node dies.
    #[default]
    ExclusiveQueue,
    /// RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`): no queue to
    /// declare, so sessions set up faster.
    DirectReplyTo,
}

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
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    timeout: Duration,
    reply_to: ReplyTo,
    publisher_confirms: bool,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            reply_to: ReplyTo::default(),
            publisher_confirms: true,
        }
    }
}

impl ClientBuilder {
    /// The timeout of calls that do not set their own (default:
    /// [`DEFAULT_TIMEOUT`], 30 s). It is also the `expiration` of their
    /// requests, so that the broker drops requests nobody waits for any more.
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
    /// With confirms, a call to a queue that does not exist fails at once
    /// with [`RpcError::NoSuchService`], and a request the broker refuses
    /// fails with [`RpcError::Refused`]. Without them, such calls time out.
    pub fn publisher_confirms(mut self, enabled: bool) -> Self {
        self.publisher_confirms = enabled;
        self
    }

    /// Creates the client and sets up its first session on `connection`.
    pub async fn build(self, connection: &Connection) -> Result<Client, ConnectError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let pending = Pending::new(&id);
        let config = Arc::new(Config {
            id,
            timeout: self.timeout,
            reply_to: self.reply_to,
            publisher_confirms: self.publisher_confirms,
        });
        let live = connection.live().await?;
        let (session, consumer) =
            open_session(&live, &config, 1)
                .await
                .map_err(|source| ConnectError::Channel {
                    what: "set up the client's reply consumer",
                    source,
                })?;
        pending.start_session(session.id);
        let (state_tx, state_rx) = watch::channel(SessionState::Up(session.clone()));
        let cancel = CancellationToken::new();
        tokio::spawn(
            Sessions {
                connection: connection.clone(),
                config: config.clone(),
                pending: pending.clone(),
                state: state_tx,
                cancel: cancel.clone(),
            }
            .run(live, session, consumer),
        );
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                pending,
                session: state_rx,
                _stop: cancel.drop_guard(),
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
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    pending: Arc<Pending>,
    session: watch::Receiver<SessionState>,
    /// Stops the session task when the last clone of the client is dropped.
    _stop: DropGuard,
}

struct Config {
    id: String,
    timeout: Duration,
    reply_to: ReplyTo,
    publisher_confirms: bool,
}

#[derive(Clone)]
enum SessionState {
    Up(Arc<Session>),
    Down,
    Closed,
}

/// One channel with its reply consumer.
struct Session {
    id: u64,
    channel: Channel,
    reply_to: ShortString,
    /// Receives the publisher confirms that calls stopped waiting for (their
    /// reply came first, or they were dropped), so that each is awaited to
    /// its end: lapin keeps dropped unresolved confirms until the channel's
    /// `wait_for_confirms`, which we never call.
    leftover_confirms: mpsc::UnboundedSender<PublisherConfirm>,
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
        self.inner.pending.len()
    }

    /// The timeout of calls that do not set their own.
    pub fn default_timeout(&self) -> Duration {
        self.inner.config.timeout
    }

    /// The current session, waiting for one until `deadline`. `newer_than`
    /// skips a session already found broken.
    async fn session(&self, newer_than: u64, deadline: Instant) -> Result<Arc<Session>, Waited> {
        let mut state = self.inner.session.clone();
        let found = tokio::time::timeout_at(
            deadline,
            state.wait_for(|state| match state {
                SessionState::Up(session) => session.id > newer_than,
                SessionState::Closed => true,
                SessionState::Down => false,
            }),
        )
        .await;
        match found {
            Ok(Ok(state)) => match &*state {
                SessionState::Up(session) => Ok(session.clone()),
                _ => Err(Waited::Closed),
            },
            Ok(Err(_)) => Err(Waited::Closed),
            Err(_) => Err(Waited::TimedOut),
        }
    }

    /// Runs one call: publishes its request and waits for the reply body.
    pub(crate) async fn call(&self, spec: CallSpec<'_>) -> Result<Vec<u8>, RpcError> {
        let method = spec.method;
        let timeout = spec.timeout.unwrap_or(self.inner.config.timeout);
        let deadline = Instant::now() + timeout;
        let mut broken = 0;
        loop {
            let session = match self.session(broken, deadline).await {
                Ok(session) => session,
                Err(Waited::Closed) => return Err(RpcError::Closed),
                Err(Waited::TimedOut) => return Err(RpcError::NotConnected { method }),
            };
            match self.call_on(&session, &spec, deadline, timeout).await {
                Attempt::Done(result) => return result,
                // The request was not sent: try again on the next session.
                Attempt::NotSent => broken = session.id,
            }
        }
    }

    async fn call_on(
        &self,
        session: &Session,
        spec: &CallSpec<'_>,
        deadline: Instant,
        timeout: Duration,
    ) -> Attempt {
        let method = spec.method;
        let Some(mut call) = self.inner.pending.register(session.id) else {
            return Attempt::NotSent;
        };
        let properties = request_properties(method, deadline)
            .with_correlation_id(call.correlation_id().into())
            .with_reply_to(session.reply_to.clone());
        let confirm = match tokio::time::timeout_at(
            deadline,
            session.publish(spec.queue, spec.body, properties),
        )
        .await
        {
            Err(_) => return Attempt::Done(Err(RpcError::Timeout { method, timeout })),
            Ok(Err(error)) => {
                debug!(%error, method, "publishing the request failed; retrying on the next session");
                return Attempt::NotSent;
            }
            Ok(Ok(confirm)) => confirm,
        };
        let mut confirm = LeftoverConfirm::new(confirm, session);
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                outcome = call.outcome() => {
                    return Attempt::Done(outcome.map_err(|SessionEnded| RpcError::ConnectionLost { method }));
                }
                confirmation = confirm.wait(), if confirm.is_pending() => {
                    if let Err(error) = check_confirmation(confirmation, spec) {
                        return Attempt::Done(Err(error));
                    }
                }
                () = &mut sleep => return Attempt::Done(Err(RpcError::Timeout { method, timeout })),
            }
        }
    }

    /// Runs one call without a reply: publishes its request and waits for the
    /// broker to take it.
    pub(crate) async fn send_one_way(&self, spec: CallSpec<'_>) -> Result<(), RpcError> {
        let method = spec.method;
        let timeout = spec.timeout.unwrap_or(self.inner.config.timeout);
        let deadline = Instant::now() + timeout;
        let mut broken = 0;
        loop {
            let session = match self.session(broken, deadline).await {
                Ok(session) => session,
                Err(Waited::Closed) => return Err(RpcError::Closed),
                Err(Waited::TimedOut) => return Err(RpcError::NotConnected { method }),
            };
            // A one-way request has no caller waiting to expire with, unless
            // the call set its own timeout.
            let mut properties = BasicProperties::default()
                .with_content_type(CONTENT_TYPE.into())
                .with_type(method.into());
            if spec.timeout.is_some() {
                properties = properties.with_expiration(expiration_ms(deadline).into());
            }
            let published = tokio::time::timeout_at(
                deadline,
                session.publish(spec.queue, spec.body, properties),
            )
            .await;
            let confirm = match published {
                Err(_) => return Err(RpcError::Timeout { method, timeout }),
                Ok(Err(_)) => {
                    broken = session.id;
                    continue;
                }
                Ok(Ok(confirm)) => confirm,
            };
            return match tokio::time::timeout_at(deadline, confirm).await {
                Err(_) => Err(RpcError::Timeout { method, timeout }),
                Ok(confirmation) => check_confirmation(confirmation, &spec),
            };
        }
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.inner.config.id)
            .field("timeout", &self.inner.config.timeout)
            .field("reply_to", &self.inner.config.reply_to)
            .field("pending_calls", &self.pending_calls())
            .finish()
    }
}

enum Waited {
    Closed,
    TimedOut,
}

enum Attempt {
    Done(Result<Vec<u8>, RpcError>),
    NotSent,
}

fn expiration_ms(deadline: Instant) -> String {
    // At least 1 ms: an expiration of 0 would make the broker drop the
    // request unless a consumer is ready for it that very moment.
    let remaining = deadline.saturating_duration_since(Instant::now());
    remaining.as_millis().max(1).to_string()
}

fn request_properties(method: &'static str, deadline: Instant) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_type(method.into())
        .with_expiration(expiration_ms(deadline).into())
}

/// Turns the broker's confirmation of a request into the call's fate.
fn check_confirmation(
    confirmation: lapin::Result<Confirmation>,
    spec: &CallSpec<'_>,
) -> Result<(), RpcError> {
    match confirmation {
        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(()),
        // Published `mandatory`: the broker returns a request that no queue
        // takes, then acknowledges it.
        Ok(Confirmation::Ack(Some(_))) | Ok(Confirmation::Nack(Some(_))) => {
            Err(RpcError::NoSuchService {
                queue: spec.queue.to_owned(),
            })
        }
        Ok(Confirmation::Nack(None)) => Err(RpcError::Refused {
            method: spec.method,
        }),
        Err(_) => Err(RpcError::ConnectionLost {
            method: spec.method,
        }),
    }
}

impl Session {
    async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> lapin::Result<PublisherConfirm> {
        self.channel
            .basic_publish(
                ShortString::default(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                body,
                properties,
            )
            .await
    }
}

/// A request's publisher confirm, handed to the session's reaper if the call
/// stops waiting for it before it resolves.
struct LeftoverConfirm {
    confirm: Option<PublisherConfirm>,
    reaper: mpsc::UnboundedSender<PublisherConfirm>,
}

impl LeftoverConfirm {
    fn new(confirm: PublisherConfirm, session: &Session) -> Self {
        Self {
            confirm: Some(confirm),
            reaper: session.leftover_confirms.clone(),
        }
    }

    fn is_pending(&self) -> bool {
        self.confirm.is_some()
    }

    /// Waits for the confirmation. Cancel-safe.
    async fn wait(&mut self) -> lapin::Result<Confirmation> {
        match self.confirm.as_mut() {
            Some(confirm) => {
                let confirmation = confirm.await;
                self.confirm = None;
                confirmation
            }
            None => std::future::pending().await,
        }
    }
}

impl Drop for LeftoverConfirm {
    fn drop(&mut self) {
        if let Some(confirm) = self.confirm.take() {
            // If the session's reaper is gone the channel is gone too, and
            // lapin fails its confirms: dropping is then harmless.
            let _ = self.reaper.send(confirm);
        }
    }
}

/// Awaits the confirms that calls left behind, until the session is dropped.
async fn reap_confirms(mut confirms: mpsc::UnboundedReceiver<PublisherConfirm>) {
    while let Some(confirm) = confirms.recv().await {
        let _ = confirm.await;
    }
}

async fn open_session(
    live: &Live,
    config: &Config,
    id: u64,
) -> lapin::Result<(Arc<Session>, lapin::Consumer)> {
    let channel = live.amqp.create_channel().await?;
    if config.publisher_confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
    }
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let reply_to: ShortString = match config.reply_to {
        ReplyTo::DirectReplyTo => DIRECT_REPLY_TO.into(),
        ReplyTo::ExclusiveQueue => {
            // A new name per session: the queue of a connection that the
            // broker has not yet noticed is dead may still exist.
            let name: ShortString = format!("{REPLY_QUEUE_PREFIX}{}.{id}", config.id).into();
            channel
                .queue_declare(
                    name.clone(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            name
        }
    };
    // For direct reply-to, consuming before the first publish is required.
    let consumer = channel
        .basic_consume(
            reply_to.clone(),
            ShortString::default(),
            no_ack,
            FieldTable::default(),
        )
        .await?;
    let (leftover_confirms, reaper) = mpsc::unbounded_channel();
    tokio::spawn(reap_confirms(reaper));
    let session = Arc::new(Session {
        id,
        channel,
        reply_to,
        leftover_confirms,
    });
    Ok((session, consumer))
}

/// The task that keeps a client's session: receives replies, and replaces
/// the session when it ends.
struct Sessions {
    connection: Connection,
    config: Arc<Config>,
    pending: Arc<Pending>,
    state: watch::Sender<SessionState>,
    cancel: CancellationToken,
}

impl Sessions {
    async fn run(self, mut live: Live, first: Arc<Session>, consumer: lapin::Consumer) {
        let mut session = Some((first, consumer));
        let mut last_id = 0;
        let mut failures = 0u32;
        loop {
            if let Some((current, consumer)) = session.take() {
                last_id = current.id;
                let ended = self.receive_replies(consumer).await;
                self.pending.end_session(current.id);
                if ended == Ended::Cancelled {
                    let _ = current.channel.close(200, "client closed".into()).await;
                    break;
                }
                self.state.send_replace(SessionState::Down);
                failures = 0;
            }
            // A session can end with its connection (then wait for the next
            // one) or alone, its channel closed by the broker (then retry on
            // the same connection, backing off if that keeps failing).
            let next = if live.is_open() {
                if failures > 0 {
                    let delay = Duration::from_millis(100 << failures.min(6));
                    tokio::select! {
                        () = self.cancel.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
                Ok(live.clone())
            } else {
                tokio::select! {
                    () = self.cancel.cancelled() => break,
                    next = self.connection.live_newer_than(live.generation) => next,
                }
            };
            live = match next {
                Ok(next) => next,
                Err(_) => break,
            };
            match open_session(&live, &self.config, last_id + 1).await {
                Ok((current, consumer)) => {
                    self.pending.start_session(current.id);
                    self.state.send_replace(SessionState::Up(current.clone()));
                    session = Some((current, consumer));
                }
                Err(error) => {
                    last_id += 1;
                    failures += 1;
                    warn!(%error, "could not set up the client's reply consumer; retrying");
                }
            }
        }
        self.state.send_replace(SessionState::Closed);
    }

    async fn receive_replies(&self, mut consumer: lapin::Consumer) -> Ended {
        let ended = loop {
            tokio::select! {
                () = self.cancel.cancelled() => return Ended::Cancelled,
                delivery = consumer.next() => match delivery {
                    Some(Ok(delivery)) => {
                        let correlation_id = delivery.properties.correlation_id().as_ref();
                        self.pending.complete(correlation_id.map(ShortString::as_str), delivery.data);
                    }
                    Some(Err(error)) => break error.to_string(),
                    None => break "the broker cancelled the reply consumer".to_owned(),
                },
            }
        };
        if self.connection.is_closing() {
            return Ended::Cancelled;
        }
        warn!(reason = %ended, url = self.connection.url(), "the client's session ended; calls in flight fail");
        Ended::Lost
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Lost,
    Cancelled,
}
