//! A connection to the broker that reconnects by itself.
//!
//! lapin's own automatic recovery is deliberately not used: while it
//! reconnects, publisher confirms and consumers of the lost connection stay
//! pending until the new connection is up (so calls in flight would hang for
//! the whole outage), and it cannot restore a server-named exclusive queue
//! (the broker refuses the `amq.gen-` name on redeclaration). Instead, a
//! supervisor task watches one lapin connection at a time and replaces it when
//! it dies; clients and servers notice the loss on their own channel at once,
//! fail or requeue what was in flight, and set their channels up again on the
//! next connection.

use crate::{
    backoff,
    broker_url::{check_shape, parse_error_message, redact_url},
    error::ConnectError,
};
use futures_util::StreamExt;
use lapin::{ConnectionProperties, Event, tcp::OwnedTLSConfig};
use std::{fmt, sync::Arc, time::Duration};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The first and longest delay between attempts at setting up a session on
/// a connection that is up (the broker keeps refusing the channel).
const SESSION_RETRY_MIN: Duration = Duration::from_millis(100);
const SESSION_RETRY_MAX: Duration = Duration::from_secs(5);

/// The shortest delay between reconnection attempts an application can set.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(1);

/// How often the supervisor checks the connection's state, in case the
/// connection ends without an error event (a close the broker initiated with a
/// success code, say).
const STATUS_POLL: Duration = Duration::from_secs(1);

/// A connection to RabbitMQ, shared by any number of clients and servers,
/// that reconnects by itself when the connection is lost.
///
/// Cloning is cheap: clones share the one AMQP connection. The connection is
/// closed when [`Connection::close`] is called, or when the last clone (and
/// the last client or server using it) is dropped.
///
/// While the connection is down, calls in flight fail with
/// [`RpcError::ConnectionLost`](crate::RpcError::ConnectionLost), new calls
/// wait for the connection (up to their timeout), and servers stop receiving
/// requests; everything resumes on the new connection. Reconnection attempts
/// back off exponentially, from 100 ms up to 5 s by default.
///
/// ```no_run
/// # async fn demo() -> Result<(), rpc_runtime::ConnectError> {
/// use rpc_runtime::Connection;
/// let connection = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    state: watch::Receiver<State>,
    cancel: CancellationToken,
    url: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The connection as the supervisor last saw it.
#[derive(Clone)]
enum State {
    Up(Live),
    Down,
    Closed,
}

/// One established AMQP connection, with its place in the sequence of
/// connections the supervisor has made.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) amqp: Arc<lapin::Connection>,
    pub(crate) generation: u64,
}

impl Live {
    /// Whether this AMQP connection is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.amqp.status().connected()
    }
}

/// Configures a [`Connection`]: connection name, reconnection delays, TLS.
///
/// ```no_run
/// # async fn demo() -> Result<(), rpc_runtime::ConnectError> {
/// use std::time::Duration;
/// let connection = rpc_runtime::Connection::builder("amqp://127.0.0.1:5672/%2f")
///     .name("billing-worker")
///     .reconnect_delay(Duration::from_millis(50), Duration::from_secs(2))
///     .connect()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConnectionBuilder {
    url: String,
    name: Option<String>,
    min_delay: Duration,
    max_delay: Duration,
    connect_timeout: Duration,
    tls: OwnedTLSConfig,
}

impl fmt::Debug for ConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionBuilder")
            .field("url", &redact_url(&self.url))
            .field("name", &self.name)
            .field("min_delay", &self.min_delay)
            .field("max_delay", &self.max_delay)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl ConnectionBuilder {
    /// Names the connection; RabbitMQ shows the name in its management UI and
    /// in `rabbitmqctl list_connections client_properties`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The first and the longest delay between reconnection attempts
    /// (defaults: 100 ms and 5 s). The first attempt after a loss is
    /// immediate; then the delay doubles after each failed attempt, with
    /// jitter within its upper half, and never exceeds `max`: once the broker
    /// is back, the connection is back within `max` plus the time to connect.
    /// `min` is at least 1 ms, so that a broker that is down is not dialled
    /// in a busy loop; `max` is at least `min`.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min.max(MIN_RECONNECT_DELAY);
        self.max_delay = max.max(self.min_delay);
        self
    }

    /// How long one connection attempt (TCP, TLS and the AMQP handshake) may
    /// take before it counts as failed (default: 30 s): a broker that accepts
    /// connections but never answers must not stall reconnection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts the given CA certificates (PEM) for `amqps://` URLs, in addition
    /// to the system's roots.
    pub fn tls_ca_certificates(mut self, pem: impl Into<String>) -> Self {
        self.tls.cert_chain = Some(pem.into());
        self
    }

    /// Connects, failing if the broker cannot be reached now. Once connected,
    /// the connection reconnects by itself for as long as it is in use.
    ///
    /// Must be called within a Tokio runtime.
    pub async fn connect(self) -> Result<Connection, ConnectError> {
        let redacted = redact_url(&self.url);
        let invalid = |message: String| ConnectError::InvalidUrl {
            url: redacted.clone(),
            message: parse_error_message(&message, &self.url),
        };
        check_shape(&self.url).map_err(invalid)?;
        let uri = self.url.parse::<lapin::uri::AMQPUri>().map_err(invalid)?;
        let dialer = Dialer {
            uri,
            name: self.name,
            tls: self.tls,
            timeout: self.connect_timeout,
            url: redacted.clone(),
        };
        let first = dialer.dial().await?;
        info!(url = %redacted, "connected to the broker");
        let live = Live {
            amqp: Arc::new(first),
            generation: 1,
        };
        let (state_tx, state_rx) = watch::channel(State::Up(live.clone()));
        let cancel = CancellationToken::new();
        let delays = (self.min_delay, self.max_delay);
        tokio::spawn(supervise(dialer, live, delays, state_tx, cancel.clone()));
        Ok(Connection {
            inner: Arc::new(Inner {
                state: state_rx,
                cancel,
                url: redacted,
            }),
        })
    }
}

impl Connection {
    /// Connects to the broker at `url` (for example
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`) with the default settings.
    /// See [`Connection::builder`] for the others.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a connection to `url`.
    pub fn builder(url: impl Into<String>) -> ConnectionBuilder {
        ConnectionBuilder {
            url: url.into(),
            name: None,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(30),
            tls: OwnedTLSConfig::default(),
        }
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        matches!(&*self.inner.state.borrow(), State::Up(live) if live.is_open())
    }

    /// Closes the connection for good: clients and servers using it stop.
    /// Prefer shutting servers down first (`ServerHandle::shutdown`), so that
    /// their requests in flight get their replies.
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        let mut state = self.inner.state.clone();
        // The supervisor publishes `Closed` once the AMQP connection is closed;
        // an error means the supervisor is gone, which is closed too.
        let _ = state.wait_for(|state| matches!(state, State::Closed)).await;
    }

    /// The current AMQP connection, waiting for one while reconnecting.
    pub(crate) async fn live(&self) -> Result<Live, ConnectError> {
        self.live_newer_than(0).await
    }

    /// The first AMQP connection made after the one of `generation`: the
    /// current one if it is newer, or the next one.
    pub(crate) async fn live_newer_than(&self, generation: u64) -> Result<Live, ConnectError> {
        let mut state = self.inner.state.clone();
        let found = state
            .wait_for(|state| match state {
                State::Up(live) => live.generation > generation,
                State::Closed => true,
                State::Down => false,
            })
            .await
            .map_err(|_| ConnectError::Closed)?;
        match &*found {
            State::Up(live) => Ok(live.clone()),
            _ => Err(ConnectError::Closed),
        }
    }

    /// The AMQP connection to set a client's or server's next session up
    /// on, after its session on `current` ended: `current` itself if it is
    /// still open (only the channel was lost; after `failures` failed set-ups
    /// in a row, wait a little longer each time), or else the next
    /// connection the supervisor makes. `None` once closed or `stop` fires.
    pub(crate) async fn live_for_next_session(
        &self,
        current: &Live,
        failures: u32,
        stop: &CancellationToken,
    ) -> Option<Live> {
        if current.is_open() {
            if failures > 0 {
                let delay = backoff::delay(SESSION_RETRY_MIN, SESSION_RETRY_MAX, failures - 1);
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
            }
            return Some(current.clone());
        }
        tokio::select! {
            () = stop.cancelled() => None,
            next = self.live_newer_than(current.generation) => next.ok(),
        }
    }

    /// Whether [`Connection::close`] was called: sessions ending now end
    /// because of it, not because of a failure.
    pub(crate) fn is_closing(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// The URL, with its password redacted.
    pub(crate) fn url(&self) -> &str {
        &self.inner.url
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.inner.url)
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// Everything needed to open one AMQP connection.
struct Dialer {
    uri: lapin::uri::AMQPUri,
    name: Option<String>,
    tls: OwnedTLSConfig,
    timeout: Duration,
    /// Redacted, for messages.
    url: String,
}

impl Dialer {
    async fn dial(&self) -> Result<lapin::Connection, ConnectError> {
        let mut properties = ConnectionProperties::default();
        if let Some(name) = &self.name {
            properties = properties.with_connection_name(name.as_str().into());
        }
        let broker_error = |source| ConnectError::Broker {
            url: self.url.clone(),
            source,
        };
        let connecting = lapin::Connection::connect_uri_with_config(
            self.uri.clone(),
            properties,
            self.tls.clone(),
            lapin::runtime::default_runtime().map_err(broker_error)?,
        );
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(connected) => connected.map_err(broker_error),
            Err(_) => Err(ConnectError::Timeout {
                url: self.url.clone(),
                timeout: self.timeout,
            }),
        }
    }
}

/// Keeps one live AMQP connection: publishes it, waits for it to die, and
/// replaces it, until cancelled.
async fn supervise(
    dialer: Dialer,
    mut live: Live,
    (min_delay, max_delay): (Duration, Duration),
    state: watch::Sender<State>,
    cancel: CancellationToken,
) {
    loop {
        match watch_until_lost(&live, &cancel).await {
            Lost::Cancelled => break,
            Lost::Because(reason) => {
                warn!(url = %dialer.url, %reason, "connection to the broker lost; reconnecting");
                state.send_replace(State::Down);
            }
        }
        let mut attempt = 0u32;
        live = loop {
            attempt += 1;
            let dialed = tokio::select! {
                () = cancel.cancelled() => {
                    state.send_replace(State::Closed);
                    return;
                }
                dialed = dialer.dial() => dialed,
            };
            match dialed {
                Ok(amqp) => {
                    info!(url = %dialer.url, attempt, "reconnected to the broker");
                    break Live {
                        amqp: Arc::new(amqp),
                        generation: live.generation + 1,
                    };
                }
                Err(error) => {
                    let delay = backoff::delay(min_delay, max_delay, attempt - 1);
                    debug!(%error, ?delay, attempt, "reconnection attempt failed");
                    if attempt == 1 || attempt.is_power_of_two() {
                        warn!(%error, attempt, "still cannot reach the broker");
                    }
                    tokio::select! {
                        () = cancel.cancelled() => {
                            state.send_replace(State::Closed);
                            return;
                        }
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        state.send_replace(State::Up(live.clone()));
    }
    if live.is_open() {
        let _ = live
            .amqp
            .close(200, "closed by the application".into())
            .await;
    }
    state.send_replace(State::Closed);
}

enum Lost {
    Because(String),
    Cancelled,
}

async fn watch_until_lost(live: &Live, cancel: &CancellationToken) -> Lost {
    let mut events = live.amqp.events_listener();
    let mut poll = tokio::time::interval(STATUS_POLL);
    loop {
        if !live.is_open() {
            return Lost::Because(format!("the connection is {:?}", live.amqp.status()));
        }
        tokio::select! {
            () = cancel.cancelled() => return Lost::Cancelled,
            event = events.next() => match event {
                // lapin also reports channel errors (a queue declared with
                // other settings, a consumer timeout) here: only a closed
                // connection is a lost one. A dead connection is marked so
                // before its error is sent.
                Some(Event::Error(error)) if !live.is_open() => {
                    return Lost::Because(error.to_string());
                }
                Some(Event::Error(error)) => debug!(%error, "a channel error, the connection is fine"),
                Some(Event::ConnectionBlocked(reason)) => {
                    warn!(%reason, "the broker blocks publishing on this connection (resource alarm)");
                }
                Some(Event::ConnectionUnblocked) => info!("the broker unblocked the connection"),
                Some(_) => {}
                None => return Lost::Because("the connection's event stream ended".into()),
            },
            _ = poll.tick() => {}
        }
    }
}
