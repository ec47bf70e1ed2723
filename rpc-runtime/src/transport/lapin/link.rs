//! One AMQP connection: dialling it, and noticing when it is lost.

use super::AmqpError;
use futures_util::StreamExt;
use lapin::{
    ConnectionProperties, Event,
    tcp::OwnedTLSConfig,
    uri::{AMQPUri, SASLMechanism},
};
use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The heartbeat interval asked for when the URL does not say.
pub(crate) const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// How often a link's state is checked, in case the connection ends
/// without an error event (a close the broker initiated with a success
/// code, say).
const STATUS_POLL: Duration = Duration::from_secs(1);

/// One established AMQP connection, with its place in the sequence of
/// connections made for one [`Connection`](crate::Connection).
#[derive(Clone)]
pub(crate) struct Link {
    pub(super) amqp: Arc<lapin::Connection>,
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
        self.amqp.configuration().frame_max()
    }

    /// Whether the connection is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.amqp.status().connected()
    }

    /// Closes the connection, as the application asked: within two
    /// heartbeats (the time after which a broker that does not answer is
    /// given up), or 20 s without heartbeats. lapin stops watching the
    /// heartbeats once closing, so a frozen broker's `close-ok`, which never
    /// comes, would be awaited for ever.
    pub(crate) async fn close(&self) {
        if self.is_open() {
            let heartbeat = match self.amqp.configuration().heartbeat() {
                0 => DEFAULT_HEARTBEAT_SECS,
                seconds => seconds,
            };
            let patience = Duration::from_secs(2 * u64::from(heartbeat));
            let closing = self.amqp.close(200, "closed by the application".into());
            if tokio::time::timeout(patience, closing).await.is_err() {
                debug!(
                    ?patience,
                    "the broker did not answer the connection's close"
                );
            }
        }
    }

    /// Waits until the connection is lost (and says why), or `cancel` fires
    /// (`None`).
    pub(crate) async fn until_lost(&self, cancel: &CancellationToken) -> Option<String> {
        let mut events = self.amqp.events_listener();
        let mut poll = tokio::time::interval(STATUS_POLL);
        loop {
            if !self.is_open() {
                return Some(format!("the connection is {:?}", self.amqp.status()));
            }
            tokio::select! {
                () = cancel.cancelled() => return None,
                event = events.next() => match event {
                    // lapin also reports channel errors (a queue declared with
                    // other settings, a consumer timeout) here: only a closed
                    // connection is a lost one. A dead connection is marked so
                    // before its error is sent.
                    Some(Event::Error(error)) if !self.is_open() => {
                        return Some(error.to_string());
                    }
                    Some(Event::Error(error)) => debug!(%error, "a channel error, the connection is fine"),
                    Some(Event::ConnectionBlocked(reason)) => {
                        warn!(%reason, "the broker blocks publishing on this connection (resource alarm)");
                    }
                    Some(Event::ConnectionUnblocked) => info!("the broker unblocked the connection"),
                    Some(_) => {}
                    None => return Some("the connection's event stream ended".into()),
                },
                _ = poll.tick() => {}
            }
        }
    }
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
    tls: OwnedTLSConfig,
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
        let tls = OwnedTLSConfig {
            cert_chain: ca_certificates,
            ..OwnedTLSConfig::default()
        };
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

    /// Opens connection number `generation`.
    pub(crate) async fn dial(&self, generation: u64) -> Result<Link, DialError> {
        let mut properties = ConnectionProperties::default();
        if let Some(name) = &self.name {
            properties = properties.with_connection_name(name.as_str().into());
        }
        let broker_error = |source: lapin::Error| DialError::Broker(AmqpError::from(source));
        let connecting = lapin::Connection::connect_uri_with_config(
            self.uri.clone(),
            properties,
            self.tls.clone(),
            lapin::runtime::default_runtime().map_err(broker_error)?,
        );
        match tokio::time::timeout(self.timeout, connecting).await {
            Ok(connected) => Ok(Link {
                amqp: Arc::new(connected.map_err(broker_error)?),
                generation,
                url: Arc::from(self.url.as_str()),
                user: self.user().map(Arc::from),
            }),
            Err(_) => Err(DialError::Timeout(self.timeout)),
        }
    }
}
