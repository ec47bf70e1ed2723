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
    admission::DEFAULT_MAX_REQUEST_SIZE,
    call::CallSpec,
    clock::instant_after,
    connection::{Connection, Live},
    digits,
    error::{ConnectError, RpcError},
    pending::{Outcome, Pending, Unanswered, sweep_deadlines},
    presence::{self, Answers, Presence, Prober},
    protocol::{CONTENT_TYPE, DIRECT_REPLY_TO, MAX_EXPIRATION, MAX_QUEUE_NAME, REPLY_QUEUE_PREFIX},
    publisher::{CallPublisher, OneWayPublisher, Request, Verdict},
};
use futures_util::StreamExt;
use lapin::{
    BasicProperties, Channel,
    options::{BasicConsumeOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{FieldTable, ShortString},
};
use std::{fmt, sync::Arc, time::Duration};
use tokio::{
    sync::{OnceCell, watch},
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
    max_request_size: usize,
    require_server: bool,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            reply_to: ReplyTo::default(),
            publisher_confirms: true,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            require_server: false,
        }
    }
}

impl ClientBuilder {
    /// The timeout of calls that do not set their own (default:
    /// [`DEFAULT_TIMEOUT`], 30 s). It is also the `expiration` of their
    /// requests, so that the broker drops requests nobody waits for any more
    /// (capped at [`MAX_EXPIRATION`](crate::protocol::MAX_EXPIRATION), ten
    /// years, the most the broker accepts). Any duration is accepted:
    /// `Duration::MAX` waits as good as forever, and a zero timeout fails
    /// every call with [`RpcError::Timeout`] without sending it.
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

    /// The largest request body the client sends, in bytes (default:
    /// [`DEFAULT_MAX_REQUEST_SIZE`], 4 MiB, the servers' default limit).
    /// Larger calls fail at once with [`RpcError::RequestTooLarge`].
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.max_request_size = bytes;
        self
    }

    /// Whether calls fail at once with [`RpcError::NoServer`] when their
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

    /// Creates the client and sets up its first session on `connection`.
    pub async fn build(self, connection: &Connection) -> Result<Client, ConnectError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let pending = Pending::new(&id);
        let config = Arc::new(Config {
            id,
            timeout: self.timeout,
            reply_to: self.reply_to,
            publisher_confirms: self.publisher_confirms,
            max_request_size: self.max_request_size,
            require_server: self.require_server,
        });
        let live = connection.live().await?;
        let (session, consumer) =
            open_session(&live, &config, &pending, 1)
                .await
                .map_err(|source| ConnectError::Channel {
                    what: "set up the client's reply consumer",
                    source,
                })?;
        pending.start_session(session.id);
        let (state_tx, state_rx) = watch::channel(SessionState::Up(session.clone()));
        let cancel = CancellationToken::new();
        tokio::spawn(sweep_deadlines(pending.clone(), cancel.clone()));
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
                answers: Answers::default(),
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
    /// What the broker said of the request queues' consumers.
    answers: Answers,
    session: watch::Receiver<SessionState>,
    /// Stops the session task when the last clone of the client is dropped.
    _stop: DropGuard,
}

struct Config {
    id: String,
    timeout: Duration,
    reply_to: ReplyTo,
    publisher_confirms: bool,
    max_request_size: usize,
    require_server: bool,
}

#[derive(Clone)]
enum SessionState {
    Up(Arc<Session>),
    Down,
    Closed,
}

/// One channel with its reply consumer, and (once needed) one for one-way
/// requests.
struct Session {
    id: u64,
    reply_to: ShortString,
    requests: CallPublisher,
    /// Opened on the first one-way call (see [`publisher`](crate::publisher)
    /// for why one-way requests need a channel of their own).
    one_way: OnceCell<OneWayPublisher>,
    /// Asks the broker whether servers consume a queue (see
    /// [`presence`](crate::presence)).
    probe: Prober,
    live: Live,
    confirms: bool,
    pending: Arc<Pending>,
}

impl Session {
    async fn one_way(&self) -> lapin::Result<&OneWayPublisher> {
        self.one_way
            .get_or_try_init(|| async {
                let channel = confirmed_channel(&self.live, self.confirms).await?;
                Ok(OneWayPublisher::new(
                    channel,
                    self.confirms,
                    self.pending.clone(),
                ))
            })
            .await
    }

    async fn close(&self) {
        let _ = self
            .requests
            .channel()
            .close(200, "session over".into())
            .await;
        if let Some(one_way) = self.one_way.get() {
            let _ = one_way.channel().close(200, "session over".into()).await;
        }
        self.probe.close().await;
    }
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

    /// The current session, if one is up and newer than `newer_than`.
    fn current_session(&self, newer_than: u64) -> Option<Arc<Session>> {
        match &*self.inner.session.borrow() {
            SessionState::Up(session) if session.id > newer_than => Some(session.clone()),
            _ => None,
        }
    }

    /// The current session, waiting for one if there is none; `newer_than`
    /// skips a session already found broken. `None` once the client is
    /// closed.
    async fn session(&self, newer_than: u64) -> Option<Arc<Session>> {
        let mut state = self.inner.session.clone();
        let found = state
            .wait_for(|state| match state {
                SessionState::Up(session) => session.id > newer_than,
                SessionState::Closed => true,
                SessionState::Down => false,
            })
            .await
            .ok()?;
        match &*found {
            SessionState::Up(session) => Some(session.clone()),
            _ => None,
        }
    }

    /// The deadline of a call that may be sent, or why it may not.
    fn deadline_for(&self, spec: &CallSpec) -> Result<Deadline, RpcError> {
        if spec.queue.len() > MAX_QUEUE_NAME {
            return Err(RpcError::InvalidQueueName {
                queue: spec.queue.as_ref().to_owned(),
            });
        }
        let limit = self.inner.config.max_request_size;
        if spec.body.len() > limit {
            return Err(RpcError::RequestTooLarge {
                method: spec.method,
                size: spec.body.len(),
                limit,
            });
        }
        let timeout = spec.timeout.unwrap_or(self.inner.config.timeout);
        if timeout.is_zero() {
            return Err(RpcError::Timeout {
                method: spec.method,
                timeout,
                queue: spec.queue.as_ref().to_owned(),
                consumers: None,
            });
        }
        Ok(Deadline {
            at: instant_after(timeout),
            timeout,
        })
    }

    /// Whether servers consume `queue`, as the broker says now (or said a
    /// moment ago), asked over `session`'s connection by a call with
    /// `timeout`.
    async fn presence(&self, session: &Session, queue: &Arc<str>, timeout: Duration) -> Presence {
        let patience = presence::patience(timeout);
        session
            .probe
            .ask(&session.live.amqp, &self.inner.answers, queue, patience)
            .await
    }

    /// The error of a call to `queue` whose deadline passed: a timeout that
    /// says whether any server was consuming the queue then.
    async fn timed_out(
        &self,
        queue: &Arc<str>,
        method: &'static str,
        deadline: Deadline,
    ) -> RpcError {
        let presence = match self.current_session(0) {
            Some(session) => self.presence(&session, queue, deadline.timeout).await,
            None => Presence::Unknown,
        };
        RpcError::Timeout {
            method,
            timeout: deadline.timeout,
            queue: queue.as_ref().to_owned(),
            consumers: presence.consumers(),
        }
    }

    /// For calls that require a server: fails unless one consumes `queue`.
    async fn check_server(
        &self,
        session: &Session,
        queue: &Arc<str>,
        deadline: Deadline,
    ) -> Result<(), RpcError> {
        match self.presence(session, queue, deadline.timeout).await {
            Presence::Consumers(0) => Err(RpcError::NoServer {
                queue: queue.as_ref().to_owned(),
            }),
            Presence::NoQueue => Err(RpcError::NoSuchService {
                queue: queue.as_ref().to_owned(),
            }),
            // Unknown: the call goes ahead, and its error says what happened.
            Presence::Consumers(_) | Presence::Unknown => Ok(()),
        }
    }

    /// The session to send a request on after session `broken` (0: none
    /// yet) could not send it, waiting for one until the deadline.
    async fn next_session(
        &self,
        broken: u64,
        deadline: Deadline,
        method: &'static str,
    ) -> Result<Arc<Session>, Failed> {
        let session = match self.current_session(broken) {
            Some(session) => session,
            // Waiting for a session, the rare case, takes a timer; calls
            // otherwise keep their deadline in the table of pending calls.
            None => match tokio::time::timeout_at(deadline.at, self.session(broken)).await {
                Ok(Some(session)) => session,
                Ok(None) => return Err(Failed::Rpc(RpcError::Closed)),
                Err(_) => return Err(Failed::Rpc(RpcError::NotConnected { method })),
            },
        };
        if broken != 0 && Instant::now() >= deadline.at {
            return Err(Failed::TimedOut);
        }
        Ok(session)
    }

    /// Runs one call: publishes its request and waits for the reply body,
    /// moving on to the next session whenever the request could not be
    /// sent, all within the call's timeout.
    ///
    /// One `async fn` from the call to the publication, without layers of
    /// futures in between: each layer would move its state once more per
    /// call.
    pub(crate) async fn call(self, spec: CallSpec) -> Result<Vec<u8>, RpcError> {
        let deadline = self.deadline_for(&spec)?;
        let method = spec.method;
        let answer = |outcome: Outcome| match outcome {
            Ok(reply) => Ok(reply),
            Err(Unanswered::SessionEnded) => Err(Failed::Rpc(RpcError::ConnectionLost { method })),
            Err(Unanswered::Returned) => Err(Failed::Rpc(RpcError::NoSuchService {
                queue: spec.queue.as_ref().to_owned(),
            })),
            Err(Unanswered::TimedOut) => Err(Failed::TimedOut),
        };
        let ended: Result<Vec<u8>, Failed> = 'call: {
            // The rare paths (waiting for a session, for a lost session's
            // publication, asking whether a server is there) are boxed:
            // their timers would otherwise more than double the size of
            // every call's future.
            let mut session = match self.current_session(0) {
                Some(session) => session,
                None => match Box::pin(self.next_session(0, deadline, method)).await {
                    Ok(session) => session,
                    Err(failed) => break 'call Err(failed),
                },
            };
            if spec
                .require_server
                .unwrap_or(self.inner.config.require_server)
                && let Err(error) =
                    Box::pin(self.check_server(&session, &spec.queue, deadline)).await
            {
                break 'call Err(Failed::Rpc(error));
            }
            loop {
                // One attempt on `session`; leaving the block means the
                // request was not sent, and the next session is tried.
                'attempt: {
                    let Some(mut call) = self.inner.pending.register(session.id, deadline.at)
                    else {
                        break 'attempt;
                    };
                    let properties = request_properties(method)
                        .with_expiration(deadline.expiration_ms().into())
                        .with_correlation_id(call.take_correlation_id())
                        .with_reply_to(session.reply_to.clone());
                    let mut publication = session.requests.publish(Request {
                        queue: spec.queue.as_ref().into(),
                        body: spec.body.clone(),
                        properties,
                    });
                    // The confirmation first: the reply, should it come
                    // sooner, waits in the table. A returned request
                    // (perhaps this one) was routed by its correlation id; a
                    // lost channel ends the session, and its calls: only
                    // what surely concerns this call is news here. Unless
                    // the deadline passes meanwhile: the channel's task then
                    // finishes the publication.
                    let verdict = tokio::select! {
                        biased;
                        verdict = &mut publication => verdict,
                        outcome = call.outcome() => match outcome {
                            // Whether the request was sent decides between a
                            // retry and a lost call.
                            Err(Unanswered::SessionEnded) => {
                                let sent = tokio::time::timeout_at(deadline.at, publication);
                                match Box::pin(sent).await {
                                    Ok(Verdict::NotSent) => break 'attempt,
                                    Ok(_) => break 'call answer(Err(Unanswered::SessionEnded)),
                                    Err(_) => break 'call Err(Failed::TimedOut),
                                }
                            }
                            outcome => break 'call answer(outcome),
                        },
                    };
                    match verdict {
                        Verdict::NotSent => break 'attempt,
                        Verdict::Refused => {
                            break 'call Err(Failed::Rpc(RpcError::Refused { method }));
                        }
                        Verdict::Taken | Verdict::Returned | Verdict::Lost => {}
                    }
                    break 'call answer(call.outcome().await);
                }
                session = match Box::pin(self.next_session(session.id, deadline, method)).await {
                    Ok(session) => session,
                    Err(failed) => break 'call Err(failed),
                };
            }
        };
        match ended {
            Ok(reply) => Ok(reply),
            Err(Failed::Rpc(error)) => Err(error),
            // Every way of timing out ends here, to say whether a server was
            // consuming the queue.
            Err(Failed::TimedOut) => {
                Err(Box::pin(self.timed_out(&spec.queue, method, deadline)).await)
            }
        }
    }

    /// Runs one call without a reply: publishes its request and waits for the
    /// broker to take it, moving on to the next session whenever the request
    /// could not be sent.
    pub(crate) async fn send_one_way(&self, spec: CallSpec) -> Result<(), RpcError> {
        let deadline = self.deadline_for(&spec)?;
        let method = spec.method;
        let ended = 'send: {
            let mut session = match self.next_session(0, deadline, method).await {
                Ok(session) => session,
                Err(failed) => break 'send failed,
            };
            if spec
                .require_server
                .unwrap_or(self.inner.config.require_server)
            {
                self.check_server(&session, &spec.queue, deadline).await?;
            }
            loop {
                let sent =
                    tokio::time::timeout_at(deadline.at, self.send_on(&session, &spec, deadline));
                match sent.await {
                    Ok(Some(result)) => return result,
                    Ok(None) => {}
                    Err(_) => break 'send Failed::TimedOut,
                }
                session = match self.next_session(session.id, deadline, method).await {
                    Ok(session) => session,
                    Err(failed) => break 'send failed,
                };
            }
        };
        Err(match ended {
            Failed::Rpc(error) => error,
            Failed::TimedOut => self.timed_out(&spec.queue, method, deadline).await,
        })
    }

    async fn send_on(
        &self,
        session: &Session,
        spec: &CallSpec,
        deadline: Deadline,
    ) -> Option<Result<(), RpcError>> {
        let publisher = match session.one_way().await {
            Ok(publisher) => publisher,
            Err(error) => {
                debug!(%error, "could not open the one-way channel");
                return None;
            }
        };
        let mut properties = request_properties(spec.method);
        // A one-way request has no caller waiting to expire with, unless the
        // call set its own timeout.
        if spec.timeout.is_some() {
            properties = properties.with_expiration(deadline.expiration_ms().into());
        }
        let request = Request {
            queue: spec.queue.as_ref().into(),
            body: spec.body.clone(),
            properties,
        };
        let method = spec.method;
        Some(match publisher.publish(request).await {
            Verdict::Taken => Ok(()),
            Verdict::Returned => Err(RpcError::NoSuchService {
                queue: spec.queue.as_ref().to_owned(),
            }),
            Verdict::Refused => Err(RpcError::Refused { method }),
            Verdict::Lost => Err(RpcError::ConnectionLost { method }),
            Verdict::NotSent => return None,
        })
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

/// When a call gives up.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    timeout: Duration,
}

impl Deadline {
    /// The time left, as a request's `expiration`: at least 1 ms, since an
    /// expiration of 0 would make the broker drop the request unless a
    /// consumer is ready for it that very moment, and at most what the broker
    /// accepts ([`MAX_EXPIRATION`]).
    fn expiration_ms(&self) -> String {
        let remaining = self.at.saturating_duration_since(Instant::now());
        let millis = remaining.min(MAX_EXPIRATION).as_millis().max(1);
        digits::decimal(millis.try_into().unwrap_or(u64::MAX))
    }
}

/// How a call failed, before a timeout is told apart by asking whether a
/// server was there.
enum Failed {
    Rpc(RpcError),
    TimedOut,
}

impl From<RpcError> for Failed {
    fn from(error: RpcError) -> Self {
        Failed::Rpc(error)
    }
}

fn request_properties(method: &'static str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(CONTENT_TYPE.into())
        .with_type(method.into())
}

/// A channel for requests, with publisher confirms if configured.
async fn confirmed_channel(live: &Live, confirms: bool) -> lapin::Result<Channel> {
    let channel = live.amqp.create_channel().await?;
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
    }
    Ok(channel)
}

async fn open_session(
    live: &Live,
    config: &Config,
    pending: &Arc<Pending>,
    id: u64,
) -> lapin::Result<(Arc<Session>, lapin::Consumer)> {
    let channel = confirmed_channel(live, config.publisher_confirms).await?;
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
    let session = Arc::new(Session {
        id,
        reply_to,
        requests: CallPublisher::new(channel, config.publisher_confirms, pending.clone()),
        one_way: OnceCell::new(),
        probe: Prober::default(),
        live: live.clone(),
        confirms: config.publisher_confirms,
        pending: pending.clone(),
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
                    current.close().await;
                    break;
                }
                self.state.send_replace(SessionState::Down);
                // The session may have ended alone, its channels still open.
                current.close().await;
                failures = 0;
            }
            // A session ends with its connection, or alone (its channel
            // closed by the broker): set the next one up accordingly.
            live = match self
                .connection
                .live_for_next_session(&live, failures, &self.cancel)
                .await
            {
                Some(next) => next,
                None => break,
            };
            match open_session(&live, &self.config, &self.pending, last_id + 1).await {
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

    async fn receive_replies(&self, consumer: lapin::Consumer) -> Ended {
        // Raced once against the whole loop rather than per reply: a
        // `select!` per reply would move each delivery once more and poll
        // the token each time.
        let ended = tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Ended::Cancelled,
            ended = self.hand_out_replies(consumer) => ended,
        };
        if self.connection.is_closing() {
            return Ended::Cancelled;
        }
        warn!(reason = %ended, url = self.connection.url(), "the client's session ended; calls in flight fail");
        Ended::Lost
    }

    /// Hands each reply to the call waiting for it until the consumer ends;
    /// returns why it ended.
    async fn hand_out_replies(&self, mut consumer: lapin::Consumer) -> String {
        loop {
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let correlation_id = delivery.properties.correlation_id().as_ref();
                    self.pending
                        .complete(correlation_id.map(ShortString::as_str), delivery.data);
                }
                Some(Err(error)) => return error.to_string(),
                None => return "the broker cancelled the reply consumer".to_owned(),
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Lost,
    Cancelled,
}
