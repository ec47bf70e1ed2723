//! When a server acknowledges, rejects or requeues a request.
//!
//! The policy gives at-least-once execution without poison loops:
//!
//! | what happened | reply | request |
//! |---|---|---|
//! | the method ran (`ok` or `err`) | published first | acknowledged |
//! | it could not run (a fault: undecodable, unknown method, panic, ...) | `fault`, published first | rejected, not requeued (dead-lettered if the queue has a dead-letter exchange) |
//! | the reply could not be published (the channel is gone) | — | left unacknowledged: the broker redelivers it |
//! | the server shuts down before starting it | — | requeued for another server |
//! | the server's connection dies mid-request | — | left unacknowledged: the broker redelivers it |
//!
//! Acknowledging only after the reply is published is what makes a crash
//! between the two safe: the request comes back and runs again, so methods
//! must be idempotent (`RequestContext::redelivered` tells a handler when a
//! request may have run before). The acknowledgement is sent only once the
//! reply is written to the connection (lapin sends acknowledgements ahead of
//! queued publishes), on the same channel, so the broker never sees the
//! acknowledgement without the reply before it.

use crate::error::Fault;
use lapin::{
    Acker,
    options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions},
};
use tracing::debug;

/// What to tell the broker about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Done with it: remove it from the queue.
    Ack,
    /// It can never succeed: remove it (or dead-letter it) without retrying.
    Reject,
    /// Not started: give it to another consumer.
    Requeue,
}

impl Disposition {
    /// The disposition of a request whose reply (if it wanted one) has been
    /// published.
    pub(crate) fn after_handling(outcome: &Result<Vec<u8>, Fault>) -> Self {
        match outcome {
            Ok(_) => Disposition::Ack,
            Err(_) => Disposition::Reject,
        }
    }

    /// Tells the broker. A failure means the channel is gone, and with it the
    /// broker's record of the delivery: it redelivers the request, which is
    /// what the policy wants for every outcome but `Reject` — and a rejected
    /// request merely gets one more fault reply.
    pub(crate) async fn apply(self, acker: &Acker) {
        let result = match self {
            Disposition::Ack => acker.ack(BasicAckOptions::default()).await,
            Disposition::Reject => acker.reject(BasicRejectOptions { requeue: false }).await,
            Disposition::Requeue => {
                acker
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
            }
        };
        if let Err(error) = result {
            debug!(%error, disposition = ?self, "could not settle a request; the broker will redeliver it");
        }
    }
}
