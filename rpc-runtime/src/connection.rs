//! A connection to the broker that reconnects by itself.
//!
//! lapin's own automatic recovery is deliberately not used: while it
//! reconnects, publisher confirms and consumers of the lost connection stay
//! pending until the new connection is up (so calls in flight would hang for
//! the whole outage), and it cannot restore a server-named exclusive queue
//! (the broker refuses the `amq.gen-` name on redeclaration). Instead, a
//! supervisor task watches one AMQP connection (a [`Link`]) at a time and
//! replaces it when it dies; clients and servers notice the loss on their
//! own channel at once, fail or requeue what was in flight, and set their
//! sessions up again on the next link (see [`session`](crate::session)).
//!
//! A connection may know several brokers (the nodes of a cluster): it
//! connects to the first that answers, in the order given (or shuffled, if
//! asked), and after a loss tries the others first, starting with the one
//! after the node it lost.

use crate::{
    backoff,
    broker_url::{check_shape, parse_error_message, redact_url, split_urls},
    error::ConnectError,
    session::{self, Publisher, Watch},
    transport::link::{DialError, Dialer, Link},
};
use std::{
    fmt,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The shortest delay between reconnection attempts an application can set.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(1);

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
/// back off exponentially, from 100 ms up to 5 s by default (see
/// [`ConnectionBuilder::reconnect_delay`]).
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
    links: Watch<Link>,
    cancel: CancellationToken,
    /// How long setting up a client or a server waits for the connection
    /// while it reconnects: the connect timeout.
    patience: Duration,
    /// Every address, redacted, for `Debug`.
    urls: Vec<String>,
    /// The broker last connected to, kept by the supervisor.
    last: Arc<Mutex<Last>>,
}

/// The broker a connection last connected to.
#[derive(Default, Clone)]
struct Last {
    /// Its URL, redacted: what [`Connection::url`] says while reconnecting.
    url: String,
    /// How many times the connection was made again.
    reconnections: u64,
    /// The user its URL authenticates as, if it says.
    user: Option<Arc<str>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Configures a [`Connection`]: its brokers, connection name, reconnection
/// delays, TLS.
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
///
/// The nodes of a cluster, in the order to try them (or comma-separated in
/// one string, as `AMQP_URL` may hold them):
///
/// ```no_run
/// # async fn demo() -> Result<(), rpc_runtime::ConnectError> {
/// let connection = rpc_runtime::Connection::builder("amqp://app:pw@mq-1:5672/%2f")
///     .address("amqp://app:pw@mq-2:5672/%2f")
///     .address("amqp://app:pw@mq-3:5672/%2f")
///     .connect()
///     .await?;
/// let same = rpc_runtime::Connection::connect(
///     "amqp://app:pw@mq-1:5672/%2f,amqp://app:pw@mq-2:5672/%2f,amqp://app:pw@mq-3:5672/%2f",
/// )
/// .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ConnectionBuilder {
    urls: Vec<String>,
    shuffle: bool,
    name: Option<String>,
    min_delay: Duration,
    max_delay: Duration,
    connect_timeout: Duration,
    ca_certificates: Option<String>,
}

impl fmt::Debug for ConnectionBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact_url(url)).collect();
        f.debug_struct("ConnectionBuilder")
            .field("urls", &urls)
            .field("shuffle", &self.shuffle)
            .field("name", &self.name)
            .field("min_delay", &self.min_delay)
            .field("max_delay", &self.max_delay)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl ConnectionBuilder {
    /// Adds another broker to connect to (another node of the cluster), or
    /// several, comma-separated: tried after those given before, in order.
    pub fn address(mut self, url: impl AsRef<str>) -> Self {
        self.urls.extend(split_urls(url.as_ref()));
        self
    }

    /// Whether to try the brokers in a random order rather than in the
    /// order given (default: in order, so that the first is preferred):
    /// shuffled, many clients with the same list spread over the nodes.
    pub fn shuffle_addresses(mut self, shuffle: bool) -> Self {
        self.shuffle = shuffle;
        self
    }

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
    /// in a busy loop; `max` is at least `min`. A connection lost again
    /// within `max` of being made is redialled after the same growing
    /// delays, not at once, so that one the broker closes as soon as it
    /// opens is not remade in a tight loop.
    pub fn reconnect_delay(mut self, min: Duration, max: Duration) -> Self {
        self.min_delay = min.max(MIN_RECONNECT_DELAY);
        self.max_delay = max.max(self.min_delay);
        self
    }

    /// How long one connection attempt (TCP, TLS and the AMQP handshake) may
    /// take before it counts as failed (default: 30 s): a broker that accepts
    /// connections but never answers must not stall reconnection. Also how
    /// long [`ClientBuilder::build`](crate::ClientBuilder::build) and
    /// [`ServerBuilder::serve`](crate::ServerBuilder::serve) wait for the
    /// connection while it reconnects, before they fail with
    /// [`ConnectError::Reconnecting`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Trusts the given CA certificates (PEM) for `amqps://` URLs, in addition
    /// to the system's roots.
    pub fn tls_ca_certificates(mut self, pem: impl Into<String>) -> Self {
        self.ca_certificates = Some(pem.into());
        self
    }

    /// Connects, failing if the broker cannot be reached now. Once connected,
    /// the connection reconnects by itself for as long as it is in use.
    ///
    /// Must be called within a Tokio runtime.
    pub async fn connect(self) -> Result<Connection, ConnectError> {
        let mut dialers = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let redacted = redact_url(url);
            let invalid = |message: String| ConnectError::InvalidUrl {
                url: redacted.clone(),
                message: parse_error_message(&message, url),
            };
            check_shape(url).map_err(invalid)?;
            let dialer = Dialer::new(
                url,
                redacted.clone(),
                self.name.clone(),
                self.ca_certificates.clone(),
                self.connect_timeout,
            )
            .map_err(invalid)?;
            dialers.push(dialer);
        }
        if dialers.is_empty() {
            return Err(ConnectError::InvalidUrl {
                url: String::new(),
                message: "no broker URL given".to_owned(),
            });
        }
        if self.shuffle {
            fastrand::shuffle(&mut dialers);
        }
        let brokers = Brokers { dialers };
        let urls = brokers
            .dialers
            .iter()
            .map(|dialer| dialer.url().to_owned())
            .collect();
        let (first, at) = brokers.dial_any(1, 0).await?;
        info!(url = %first.url(), "connected to the broker");
        let (publisher, links) = session::watch(first.clone());
        let cancel = CancellationToken::new();
        let delays = (self.min_delay, self.max_delay);
        let last = Arc::new(Mutex::new(Last {
            url: first.url().to_owned(),
            reconnections: 0,
            user: first.user().cloned(),
        }));
        tokio::spawn(supervise(
            brokers,
            (first, at),
            delays,
            (publisher, last.clone()),
            cancel.clone(),
        ));
        Ok(Connection {
            inner: Arc::new(Inner {
                links,
                cancel,
                patience: self.connect_timeout,
                urls,
                last,
            }),
        })
    }
}

impl Connection {
    /// Connects to the broker at `url` (for example
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`), or to the first that
    /// answers of several, comma-separated, with the default settings. See
    /// [`Connection::builder`] for the others.
    pub async fn connect(url: impl AsRef<str>) -> Result<Self, ConnectError> {
        Self::builder(url).connect().await
    }

    /// Starts configuring a connection to `url`: a broker's AMQP URL, or
    /// several, comma-separated (the nodes of a cluster, tried in order; see
    /// [`ConnectionBuilder::address`]). A URL's query may set `heartbeat`
    /// (seconds), `connection_timeout` (milliseconds, this URL's
    /// [`ConnectionBuilder::connect_timeout`]), `channel_max`, `frame_max`
    /// and `auth_mechanism`; [`ConnectionBuilder::connect`] refuses any
    /// other parameter rather than ignore it.
    pub fn builder(url: impl AsRef<str>) -> ConnectionBuilder {
        ConnectionBuilder {
            urls: split_urls(url.as_ref()),
            shuffle: false,
            name: None,
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(30),
            ca_certificates: None,
        }
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.inner.links.is_up_and(Link::is_open)
    }

    /// The URL of the broker connected to now (or, while reconnecting, of
    /// the last one), with its password redacted: fit for logs.
    pub fn url(&self) -> String {
        match self.inner.links.current_newer_than(0) {
            Some(link) => link.url().to_owned(),
            None => self.last().url,
        }
    }

    /// How many times the connection was lost and made again (to the same
    /// broker or another): for health checks and tests.
    ///
    /// ```no_run
    /// # async fn demo(connection: rpc_runtime::Connection) {
    /// let before = connection.reconnections();
    /// // ...
    /// if connection.reconnections() > before {
    ///     tracing::info!(url = %connection.url(), "reconnected meanwhile");
    /// }
    /// # }
    /// ```
    pub fn reconnections(&self) -> u64 {
        self.last().reconnections
    }

    fn last(&self) -> Last {
        match self.inner.last.lock() {
            Ok(last) => last.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Closes the connection for good: clients and servers using it stop.
    /// Prefer shutting servers down first (`ServerHandle::shutdown`), so that
    /// their requests in flight get their replies.
    pub async fn close(&self) {
        self.inner.cancel.cancel();
        // The supervisor publishes `Closed` once the AMQP connection is
        // closed.
        self.inner.links.closed().await;
    }

    /// The user the broker authenticates this connection as, when the URL
    /// of the broker connected to now (or, while reconnecting, of the last
    /// one) says: its user name, `guest` without one; `None` with the
    /// EXTERNAL mechanism (`?auth_mechanism=external`), where the broker
    /// takes it from the client's certificate. The addresses of a cluster
    /// may name different users: calls carry the user of the connection
    /// they are published on.
    pub fn user(&self) -> Option<String> {
        let user = match self.inner.links.current_newer_than(0) {
            Some(link) => link.user().cloned(),
            None => self.last().user,
        };
        user.map(|user| user.to_string())
    }

    /// The AMQP connections, as the supervisor makes them.
    pub(crate) fn links(&self) -> &Watch<Link> {
        &self.inner.links
    }

    /// The current link, waiting for one while reconnecting, for up to the
    /// connect timeout: a client or a server set up during an outage fails
    /// rather than hang for as long as the outage lasts.
    pub(crate) async fn link(&self) -> Result<Link, ConnectError> {
        let waited = self.inner.patience;
        let deadline = crate::clock::instant_after(waited);
        let mut generation = 0;
        loop {
            let next = self.inner.links.newer_than(generation);
            match tokio::time::timeout_at(deadline, next).await {
                Ok(Some(link)) if link.is_open() => return Ok(link),
                // Lost, but its supervisor has not said so yet: the next.
                Ok(Some(link)) => generation = link.generation(),
                Ok(None) => return Err(ConnectError::Closed),
                Err(_) => {
                    return Err(ConnectError::Reconnecting {
                        url: self.url(),
                        waited,
                    });
                }
            }
        }
    }

    /// Whether [`Connection::close`] was called: sessions ending now end
    /// because of it, not because of a failure.
    pub(crate) fn is_closing(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("url", &self.url())
            .field("addresses", &self.inner.urls.len())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// The brokers a connection may dial, in the order to try them.
struct Brokers {
    dialers: Vec<Dialer>,
}

impl Brokers {
    /// Dials each broker once, from the one at `start` on, until one
    /// answers; returns the link and which broker it is. With one broker,
    /// its error; with several, every one's.
    async fn dial_any(&self, generation: u64, start: usize) -> Result<(Link, usize), ConnectError> {
        let count = self.dialers.len();
        let mut errors = Vec::new();
        for offset in 0..count {
            let at = (start + offset) % count;
            let dialer = &self.dialers[at];
            match dialer.dial(generation).await {
                Ok(link) => return Ok((link, at)),
                Err(error) => {
                    let error = dial_error(error, dialer.url());
                    if count > 1 {
                        debug!(%error, "this broker did not answer; trying the next");
                    }
                    errors.push(error);
                }
            }
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            ConnectError::NoBrokerAnswered { errors }
        })
    }
}

/// Keeps one live link: publishes it, waits for it to die, and replaces it
/// (trying the other brokers first), until cancelled.
async fn supervise(
    brokers: Brokers,
    (mut link, mut at): (Link, usize),
    (min_delay, max_delay): (Duration, Duration),
    (links, last): (Publisher<Link>, Arc<Mutex<Last>>),
    cancel: CancellationToken,
) {
    // Links in a row that died young (within the longest delay): the first
    // loss is redialled at once, and each next one after a growing delay,
    // so that a connection the broker closes as soon as it opens (or one
    // that a poisoned request kills each time it is redelivered) is not
    // remade in a tight loop.
    let mut died_young = 0u32;
    let mut since = Instant::now();
    loop {
        match link.until_lost(&cancel).await {
            None => break,
            Some(reason) => {
                warn!(url = %link.url(), %reason, "connection to the broker lost; reconnecting");
                links.down();
            }
        }
        let lived = since.elapsed();
        died_young = if lived < max_delay { died_young + 1 } else { 0 };
        if died_young > 1 {
            let delay = backoff::delay(min_delay, max_delay, died_young - 2);
            debug!(
                ?lived,
                ?delay,
                "the connection died young; waiting before reconnecting"
            );
            if !pause(delay, &cancel).await {
                links.closed();
                return;
            }
        }
        let mut attempt = 0u32;
        (link, at) = loop {
            attempt += 1;
            // The node after the one lost first: the lost one is likely down.
            let start = at + 1;
            let dialed = tokio::select! {
                () = cancel.cancelled() => {
                    links.closed();
                    return;
                }
                dialed = brokers.dial_any(link.generation() + 1, start) => dialed,
            };
            match dialed {
                Ok((next, next_at)) => {
                    info!(url = %next.url(), attempt, "reconnected to the broker");
                    break (next, next_at);
                }
                Err(error) => {
                    let delay = backoff::delay(min_delay, max_delay, attempt - 1);
                    debug!(%error, ?delay, attempt, "reconnection attempt failed");
                    if attempt == 1 || attempt.is_power_of_two() {
                        warn!(%error, attempt, "still cannot reach the broker");
                    }
                    if !pause(delay, &cancel).await {
                        links.closed();
                        return;
                    }
                }
            }
        };
        if let Ok(mut last) = last.lock() {
            link.url().clone_into(&mut last.url);
            last.reconnections += 1;
            last.user = link.user().cloned();
        }
        since = Instant::now();
        links.up(link.clone());
    }
    link.close().await;
    links.closed();
}

/// Waits `delay`: `false` if `cancel` fired first.
async fn pause(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// The error of a failed dial, naming the broker.
fn dial_error(error: DialError, url: &str) -> ConnectError {
    match error {
        DialError::Broker(source) => ConnectError::Broker {
            url: url.to_owned(),
            source,
        },
        DialError::Timeout(timeout) => ConnectError::Timeout {
            url: url.to_owned(),
            timeout,
        },
    }
}
