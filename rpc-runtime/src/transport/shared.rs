//! What both transports' modules offer alike: the types that describe
//! requests, verdicts and queues without a client library's types. Each
//! transport's `publish`, `server` and `probe` re-export them, so that the
//! code above names them as before.

use super::AmqpError;
use crate::protocol::request::RequestProperties;
use std::sync::Arc;

/// What the broker said of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The broker took responsibility for the request.
    Taken,
    /// The confirmation carried a returned message: for a one-way request,
    /// its own; for a call, perhaps another's, and routed to it.
    Returned,
    /// The broker refused the request.
    Refused,
    /// The request could not be written: it was not sent.
    NotSent,
    /// The channel failed after the request was written.
    Lost,
}

/// A request to publish.
pub(crate) struct Request {
    pub(crate) queue: Arc<str>,
    pub(crate) body: Arc<Vec<u8>>,
    pub(crate) properties: RequestProperties,
}

/// Where a returned request goes: called with its correlation id.
pub(crate) type ReturnedTo = Arc<dyn Fn(Option<&str>) + Send + Sync>;

/// How a server's request queue is declared: always durable, not
/// exclusive, not auto-deleted.
#[derive(Debug, Clone)]
pub(crate) struct QueueSettings {
    /// A quorum queue (`x-queue-type = quorum`) rather than a classic one.
    pub(crate) quorum: bool,
    /// `x-delivery-limit`: after this many redeliveries, a request is
    /// dead-lettered (quorum queues only).
    pub(crate) delivery_limit: Option<u32>,
    /// A queue for dead-lettered requests, declared too
    /// (`x-dead-letter-exchange` = the default exchange,
    /// `x-dead-letter-routing-key` = its name).
    pub(crate) dead_letter_queue: Option<String>,
}

/// What the broker says of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueState {
    /// It exists, with this many consumers.
    Consumers(u32),
    /// It does not exist.
    Missing,
    /// It exists, but the node holding it is down (a classic queue in a
    /// cluster).
    NodeDown,
}

impl QueueState {
    /// What a passive declare the broker refused with `error` says of its
    /// queue: the broker closed the channel with 404 for no such queue, or
    /// (in a cluster) for one whose node is down ("home node 'rabbit@n2' of
    /// durable queue 'q' in vhost '/' is down or inaccessible"); any other
    /// refusal is the error.
    pub(crate) fn refused(error: AmqpError) -> Result<Self, AmqpError> {
        match error.reply_code() {
            Some(404) if error.to_string().contains("down or inaccessible") => Ok(Self::NodeDown),
            Some(404) => Ok(Self::Missing),
            _ => Err(error),
        }
    }
}
