//! How a client is configured: what [`ClientBuilder`](crate::ClientBuilder)
//! sets, read by the call engine and the session.

use super::intercept::ClientInterceptor;
use crate::metadata::Metadata;
use std::{fmt, time::Duration};

/// The timeout of a call when neither the client nor the call sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a call waits for the broker to confirm its request before it
/// sends the request again, when the client does not say
/// ([`ClientBuilder::confirm_patience`](crate::ClientBuilder::confirm_patience)):
/// longer than a frozen node's connections live with the default heartbeat
/// (two 10 s heartbeats), so that only requests the broker lost are sent
/// again, not those it holds while frozen.
pub const DEFAULT_CONFIRM_PATIENCE: Duration = Duration::from_secs(25);

/// The shortest confirm patience: a confirmation takes at least a round
/// trip to the broker, and a patience shorter than that would send every
/// request again, on a new channel each time.
pub(crate) const MIN_CONFIRM_PATIENCE: Duration = Duration::from_millis(100);

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

/// A client's settings.
pub(crate) struct Config {
    /// The client's id: the prefix of its correlation ids and reply queues.
    pub(crate) id: String,
    pub(crate) timeout: Duration,
    pub(crate) reply_to: ReplyTo,
    pub(crate) publisher_confirms: bool,
    /// How long a request may wait for its confirmation before it is sent
    /// again on a new channel.
    pub(crate) confirm_patience: Duration,
    pub(crate) max_request_size: usize,
    pub(crate) require_server: bool,
    /// Headers every call carries (a call's own come first).
    pub(crate) metadata: Metadata,
    pub(crate) interceptors: Vec<ClientInterceptor>,
    /// The level of the calls' spans.
    pub(crate) span_level: tracing::Level,
    /// Whether calls carry `traceparent` (and `tracestate`).
    pub(crate) trace_context: bool,
    /// Whether calls carry their connection's user as `user_id`.
    pub(crate) send_user_id: bool,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("id", &self.id)
            .field("timeout", &self.timeout)
            .field("reply_to", &self.reply_to)
            .field("metadata", &self.metadata)
            .field("interceptors", &self.interceptors.len())
            .finish_non_exhaustive()
    }
}
