//! How a client is configured: what [`ClientBuilder`](crate::ClientBuilder)
//! sets, read by the call engine and the session.

use std::time::Duration;

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

/// A client's settings.
#[derive(Debug)]
pub(crate) struct Config {
    /// The client's id: the prefix of its correlation ids and reply queues.
    pub(crate) id: String,
    pub(crate) timeout: Duration,
    pub(crate) reply_to: ReplyTo,
    pub(crate) publisher_confirms: bool,
    pub(crate) max_request_size: usize,
    pub(crate) require_server: bool,
}
