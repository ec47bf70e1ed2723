//! One AMQP connection: dialling it, and noticing when it is lost.
//!
//! The URL is read with lapin's parser, as on lapin (amqprs's own needs its
//! `urispec` feature and would not decode the `%2f` of the default vhost),
//! and turned into amqprs's arguments: host, port, credentials (PLAIN,
//! AMQPLAIN or EXTERNAL), vhost, heartbeat, and for `amqps` a TLS connector
//! built as lapin's is (rustls with ring, the system's roots and the CA
//! certificates given). lapin's other URL settings (`frame_max`,
//! `channel_max`) are not applied: amqprs takes the broker's. amqprs cannot
//! disable heartbeats: `heartbeat=0` gets the broker's interval.
//!
//! amqprs announces only the `consumer_cancel_notify` capability: RabbitMQ
//! then sends it no `connection.blocked` (so a resource alarm is not
//! logged, as it is on lapin: publishing just stalls) and closes the
//! socket on a failed authentication without saying why.
//!
//! A lost connection is told by amqprs's shutdown notice
//! (`listen_network_io_failure`): `true` for a failed socket or two missed
//! heartbeats (amqprs does not say which), `false` when the broker closed
//! the connection, whose `connection.close` the connection's callback kept.

use super::{AmqpError, Closed, lock};
use amqprs::{
    Close,
    callbacks::ConnectionCallback,
    connection::{Connection, OpenConnectionArguments},
    security::SecurityCredentials,
    tls::TlsAdaptor,
};
use async_trait::async_trait;
use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};
use std::{
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

/// The heartbeat interval asked for when the URL does not say.
pub(crate) const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// How long closing a connection waits for its channel tasks: they end at
/// once but on a broker that stopped answering.
const CHANNEL_TASKS_PATIENCE: Duration = Duration::from_secs(5);

/// How often a link's state is checked, in case the connection ends
/// unnoticed by the shutdown notice (it ended before the notice was
/// listened to).
const STATUS_POLL: Duration = Duration::from_secs(1);

/// What the connection's callback saw.
#[derive(Default)]
pub(super) struct LinkState {
    /// The broker's `connection.close`, once it came.
    closed: OnceLock<Closed>,
    /// Whether amqprs's shutdown notice said the socket failed (or
    /// heartbeats were missed).
    failed: Mutex<bool>,
    /// How many channel numbers channels the broker closed keep taken (see
    /// [`amqprs`](super)).
    numbers_kept: AtomicU32,
    /// The tasks that open and close channels and ask the probe's
    /// questions (see [`amqprs`](super)): closing the connection waits for
    /// them, so that none is still halfway when the application returns
    /// and its runtime drops them (amqprs's channel task panics on an
    /// operation dropped halfway).
    pub(super) tasks: TaskTracker,
    /// The application closes the connection: its channels close with it.
    pub(super) closing: AtomicBool,
}

impl LinkState {
    /// The broker closed a channel: its number stays taken.
    pub(super) fn channel_number_kept(&self) {
        self.numbers_kept.fetch_add(1, Ordering::Relaxed);
    }

    /// What an operation that failed with `error` reports: the broker's
    /// close of the connection, if that is what failed it.
    pub(super) fn error(&self, error: amqprs::error::Error) -> AmqpError {
        match self.closed.get() {
            Some(closed) => AmqpError::closed(closed.clone()),
            None => AmqpError::from(error),
        }
    }

    /// What a write refused because the connection is closed reports.
    pub(super) fn closed_error(&self) -> AmqpError {
        match self.closed.get() {
            Some(closed) => AmqpError::closed(closed.clone()),
            None if *lock(&self.failed) => {
                AmqpError::other("the connection failed (a network error, or missed heartbeats)")
            }
            None => AmqpError::other("the channel or its connection is closed"),
        }
    }
}

/// One established AMQP connection, with its place in the sequence of
/// connections made for one [`Connection`](crate::Connection).
#[derive(Clone)]
pub(crate) struct Link {
    /// amqprs closes the connection when its last handle is dropped.
    pub(super) amqp: Arc<Connection>,
    pub(super) state: Arc<LinkState>,
    generation: u64,
    /// The broker's URL, redacted.
    url: Arc<str>,
    /// The user its URL authenticates as (see [`Dialer::user`]).
    user: Option<Arc<str>>,
}

impl Link {
    /// Its place in the sequence: 1 for the first connection, and one more
    /// for each reconnection.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The URL of the broker this link is to, with its password redacted.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The user the broker authenticated this link as, when its URL says:
    /// the caller identity its calls carry (`user_id`), which the broker
    /// checks against it.
    pub(crate) fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// The largest frame the connection carries, as negotiated with the
    /// broker (`frame_max`; 0 would mean no limit).
    pub(crate) fn frame_max(&self) -> u32 {
        self.amqp.frame_max()
    }

    /// Whether the connection is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.amqp.is_open()
    }

    /// Closes the connection, as the application asked (amqprs sends reply
    /// code 200 without text), once the channel tasks under way have ended,
    /// and waits for those its closing ended. A broker that stopped
    /// answering holds neither wait longer than [`CHANNEL_TASKS_PATIENCE`].
    pub(crate) async fn close(&self) {
        self.state.closing.store(true, Ordering::Relaxed);
        let tasks = &self.state.tasks;
        tasks.close();
        let _ = tokio::time::timeout(CHANNEL_TASKS_PATIENCE, tasks.wait()).await;
        if self.is_open() {
            let _ = Connection::clone(&self.amqp).close().await;
        }
        let _ = tokio::time::timeout(CHANNEL_TASKS_PATIENCE, tasks.wait()).await;
    }

    /// Waits until the connection is lost (and says why), or `cancel` fires
    /// (`None`).
    pub(crate) async fn until_lost(&self, cancel: &CancellationToken) -> Option<String> {
        let mut poll = tokio::time::interval(STATUS_POLL);
        let shutdown = self.amqp.listen_network_io_failure();
        tokio::pin!(shutdown);
        loop {
            if !self.is_open() {
                return Some(self.why_lost());
            }
            // amqprs would panic when the numbers run out (see
            // [`amqprs`](super)): a new connection long before. Closed, so
            // that everything on this one ends as on a lost one.
            let kept = self.state.numbers_kept.load(Ordering::Relaxed);
            if kept >= (self.channel_numbers() / 2).max(1) {
                self.close().await;
                return Some(format!(
                    "{kept} channels the broker closed keep their numbers on this \
                     connection (amqprs does not reuse them): it is replaced"
                ));
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                failed = &mut shutdown => {
                    *lock(&self.state.failed) = failed;
                    return Some(self.why_lost());
                }
                _ = poll.tick() => {}
            }
        }
    }

    /// How many channel numbers the connection has (0 in the tuning: all
    /// of them).
    fn channel_numbers(&self) -> u32 {
        match self.amqp.channel_max() {
            0 => u32::from(u16::MAX),
            max => u32::from(max),
        }
    }

    fn why_lost(&self) -> String {
        match self.state.closed.get() {
            Some(closed) => format!("the broker closed the connection: {closed}"),
            None if *lock(&self.state.failed) => {
                "the connection failed: a network error, or two heartbeats missed".to_owned()
            }
            None => "the connection is closed".to_owned(),
        }
    }
}

/// The connection's callback: keeps the broker's close, logs resource
/// alarms.
struct Callback(Arc<LinkState>);

#[async_trait]
impl ConnectionCallback for Callback {
    async fn close(
        &mut self,
        _connection: &Connection,
        close: Close,
    ) -> Result<(), amqprs::error::Error> {
        let _ = self.0.closed.set(Closed {
            code: close.reply_code(),
            text: close.reply_text().clone(),
            class_id: close.class_id(),
            method_id: close.method_id(),
        });
        // Ok: amqprs then answers with `connection.close-ok`.
        Ok(())
    }

    async fn blocked(&mut self, _connection: &Connection, reason: String) {
        warn!(%reason, "the broker blocks publishing on this connection (resource alarm)");
    }

    async fn unblocked(&mut self, _connection: &Connection) {
        info!("the broker unblocked the connection");
    }

    async fn secret_updated(&mut self, _connection: &Connection) {}
}

/// Why a connection could not be opened.
pub(crate) enum DialError {
    /// The broker could not be reached, or refused the connection.
    Broker(AmqpError),
    /// The broker did not complete the handshake within the timeout.
    Timeout(Duration),
}

/// Everything needed to open one AMQP connection.
pub(crate) struct Dialer {
    uri: AMQPUri,
    name: Option<String>,
    /// For `amqps`: the TLS adaptor, or why it could not be made (told
    /// when dialling, as lapin tells a bad certificate).
    tls: Option<Result<TlsAdaptor, Arc<str>>>,
    timeout: Duration,
    /// Redacted, for messages.
    url: String,
}

impl Dialer {
    /// A dialer for `url` (already checked, see
    /// [`broker_url`](crate::broker_url)); `redacted` is how messages show it.
    pub(crate) fn new(
        url: &str,
        redacted: String,
        name: Option<String>,
        ca_certificates: Option<String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let mut uri = url.parse::<AMQPUri>()?;
        // amqprs takes the broker's: refused rather than ignored.
        for (key, given) in [
            ("frame_max", uri.query.frame_max.is_some()),
            ("channel_max", uri.query.channel_max.is_some()),
        ] {
            if given {
                return Err(format!(
                    "it sets `{key}`, which the amqprs transport cannot apply (amqprs takes the \
                     broker's): remove it from the URL, or use the default (lapin) transport"
                ));
            }
        }
        // Unless the URL says: RabbitMQ suggests 60 s, which leaves a node
        // that stops answering (frozen, or cut off) unnoticed for two
        // minutes; 10 s notices it within 20.
        uri.query.heartbeat.get_or_insert(DEFAULT_HEARTBEAT_SECS);
        // The URL's own, in milliseconds as the AMQP URI specification
        // says, before the builder's: the parser reads it, but neither
        // transport's connect applies it.
        let timeout = uri
            .query
            .connection_timeout
            .map_or(timeout, Duration::from_millis);
        let tls = (uri.scheme == AMQPScheme::AMQPS).then(|| {
            tls_adaptor(&uri.authority.host, ca_certificates.as_deref()).map_err(Arc::from)
        });
        Ok(Self {
            uri,
            name,
            tls,
            timeout,
            url: redacted,
        })
    }

    /// The URL dialled, with its password redacted.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The user the broker authenticates the connection as, when the URL
    /// says (PLAIN and AMQPLAIN: its user name, `guest` if none); `None`
    /// when the broker decides (EXTERNAL: from the client certificate).
    pub(crate) fn user(&self) -> Option<&str> {
        match self.uri.query.auth_mechanism.unwrap_or_default() {
            SASLMechanism::External | SASLMechanism::Anonymous => None,
            SASLMechanism::Plain | SASLMechanism::AMQPlain | SASLMechanism::RabbitCrDemo => {
                Some(self.uri.authority.userinfo.username.as_str())
            }
        }
    }

    /// amqprs's arguments for this URL.
    fn arguments(&self) -> Result<OpenConnectionArguments, AmqpError> {
        let authority = &self.uri.authority;
        let (username, password) = (
            authority.userinfo.username.as_str(),
            authority.userinfo.password.as_str(),
        );
        let credentials = match self.uri.query.auth_mechanism.unwrap_or_default() {
            SASLMechanism::Plain => SecurityCredentials::new_plain(username, password),
            SASLMechanism::AMQPlain => SecurityCredentials::new_amqplain(username, password),
            SASLMechanism::External => SecurityCredentials::new_external(),
            other => {
                return Err(AmqpError::other(format!(
                    "the amqprs transport does not support the {other:?} authentication mechanism"
                )));
            }
        };
        let mut arguments =
            OpenConnectionArguments::new(&authority.host, authority.port, username, password);
        arguments
            .virtual_host(&self.uri.vhost)
            .credentials(credentials)
            .heartbeat(self.uri.query.heartbeat.unwrap_or(DEFAULT_HEARTBEAT_SECS));
        if let Some(name) = &self.name {
            arguments.connection_name(name);
        }
        match &self.tls {
            Some(Ok(adaptor)) => {
                arguments.tls_adaptor(adaptor.clone());
            }
            Some(Err(why)) => return Err(AmqpError::other(why.clone())),
            None => {}
        }
        Ok(arguments)
    }

    /// Opens connection number `generation`.
    pub(crate) async fn dial(&self, generation: u64) -> Result<Link, DialError> {
        let arguments = self.arguments().map_err(DialError::Broker)?;
        let amqp = match tokio::time::timeout(self.timeout, Connection::open(&arguments)).await {
            Ok(Ok(amqp)) => amqp,
            Ok(Err(error)) => return Err(DialError::Broker(AmqpError::from(error))),
            Err(_) => return Err(DialError::Timeout(self.timeout)),
        };
        let state = Arc::new(LinkState::default());
        if let Err(error) = amqp.register_callback(Callback(state.clone())).await {
            debug!(%error, "the connection ended as it opened");
            return Err(DialError::Broker(AmqpError::from(error)));
        }
        Ok(Link {
            amqp: Arc::new(amqp),
            state,
            generation,
            url: Arc::from(self.url.as_str()),
            user: self.user().map(Arc::from),
        })
    }
}

/// A TLS adaptor for `host`, trusting the system's roots and the CA
/// certificates given (PEM), as lapin's connector does.
fn tls_adaptor(host: &str, ca_certificates: Option<&str>) -> Result<TlsAdaptor, String> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        debug!(%error, "a system root certificate could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    debug!(added, ignored, "the system's root certificates");
    if let Some(pem) = ca_certificates {
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let certificate =
                certificate.map_err(|error| format!("the CA certificates given: {error}"))?;
            roots
                .add(certificate)
                .map_err(|error| format!("a CA certificate given: {error}"))?;
        }
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsAdaptor::new(
        tokio_rustls::TlsConnector::from(Arc::new(config)),
        host.to_owned(),
    ))
}
