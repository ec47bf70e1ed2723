//! The one writer on a server session's channel: replies, then the
//! acknowledgement.
//!
//! A handler finishes its request only through a [`Responder`], which takes
//! the request's tag by value: a request is settled once, and a reply is
//! always written before the request is acknowledged (an acknowledgement
//! that reached the broker first would lose the request if the server died
//! before replying). What each outcome means for the request is
//! [`ack_policy`](super::ack_policy)'s table.

use super::ack_policy::{Acknowledgements, Disposition};
use crate::{
    protocol::fault::Fault,
    protocol::reply::{ReplyProperties, encode_fault},
    transport::{
        properties::IncomingProperties,
        server::{RequestChannel, RequestTag},
    },
};
use tracing::warn;

/// A server session's channel, written through: replies, acknowledgements,
/// rejections.
pub(crate) struct Responder {
    channel: RequestChannel,
    acknowledgements: Acknowledgements,
}

impl Responder {
    pub(crate) fn new(channel: RequestChannel) -> Self {
        Self {
            channel,
            acknowledgements: Acknowledgements::default(),
        }
    }

    /// Records a delivery: every request is recorded, in delivery order,
    /// before its handler starts.
    pub(crate) fn received(&self, tag: &RequestTag) {
        self.acknowledgements.received(tag.number());
    }

    /// Finishes a request that ran (or got a fault): publishes its reply if
    /// it has a `reply_to` (the method's encoded result, or the fault), and
    /// once the reply is written, settles the request as the policy says.
    ///
    /// If the reply cannot be published (the channel is gone), the request
    /// is left unacknowledged: the broker redelivers it.
    pub(crate) async fn respond(
        &self,
        tag: RequestTag,
        properties: &IncomingProperties,
        outcome: Result<Vec<u8>, Fault>,
    ) {
        let request = properties.view();
        if let Some(reply_to) = request.reply_to {
            let fault_body;
            let body = match &outcome {
                Ok(body) => body,
                Err(fault) => {
                    fault_body = encode_fault(fault);
                    &fault_body
                }
            };
            // Awaited before the acknowledgement: lapin sends
            // acknowledgements ahead of queued publishes, so only a reply
            // already written is surely ahead of it.
            let reply = ReplyProperties::answering(request.correlation_id);
            if let Err(error) = self.channel.publish_reply(reply_to, reply, body).await {
                warn!(%error, "could not publish a reply; the request will be redelivered");
                return;
            }
        }
        let disposition = Disposition::after_handling(&outcome);
        self.acknowledgements
            .settle(tag, disposition, &self.channel)
            .await;
    }

    /// Rejects a request without a reply, not requeued: its `reply_to` is
    /// not one the server publishes to, or its caller's deadline has passed
    /// (a dead-letter exchange, if the queue has one, gets it, as it gets
    /// the requests that expire in the queue).
    pub(crate) async fn reject_without_reply(&self, tag: RequestTag) {
        self.acknowledgements
            .settle(tag, Disposition::Reject, &self.channel)
            .await;
    }

    /// The session's channel, for what else is done with it (cancelling the
    /// consumer, closing it).
    pub(crate) fn channel(&self) -> &RequestChannel {
        &self.channel
    }
}

/// Hands a request that was received but not started back to the queue
/// (at shutdown), for another server.
pub(crate) async fn requeue_unstarted(tag: RequestTag) {
    Disposition::Requeue.apply(&tag).await;
}
