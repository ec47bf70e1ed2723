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
//!
//! The order, reply first, is kept by the one type that writes on a
//! server's channel, [`Responder`](super::respond::Responder); this module
//! decides what each outcome means for the request, and batches the
//! acknowledgements.
//!
//! Acknowledgements go out in batches (see [`Acknowledgements`]): one
//! `basic.ack` with `multiple = true` covers every request up to the newest
//! one when all of them are settled. Under load that takes most of the
//! acknowledgement frames off the broker, the busiest party; a lone request
//! is still acknowledged as soon as its reply is written.

use crate::{
    protocol::fault::Fault,
    transport::{
        AmqpError,
        server::{RequestChannel, RequestTag},
    },
};
use std::{
    collections::VecDeque,
    sync::{Mutex, MutexGuard, PoisonError},
};
use tracing::debug;

/// A request's number on its channel (its delivery tag).
type DeliveryTag = u64;

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

    /// Tells the broker, for this request alone, that it is rejected or
    /// requeued (acknowledgements go through [`Acknowledgements`]). A failure
    /// means the channel is gone, and with it the broker's record of the
    /// delivery: it redelivers the request, which is what the policy wants
    /// for every outcome but `Reject` — and a rejected request merely gets
    /// one more fault reply.
    pub(crate) async fn apply(self, tag: &RequestTag) {
        let result = match self {
            Disposition::Reject => tag.reject().await,
            Disposition::Requeue => tag.requeue().await,
            Disposition::Ack => return,
        };
        if let Err(error) = result {
            debug!(%error, disposition = ?self, "could not settle a request; the broker will redeliver it");
        }
    }
}

/// The acknowledgements of one session's requests, written in batches.
///
/// Acknowledging each request on its own costs a frame and a lapin promise on
/// the server and, in the broker, a message to the queue's process per
/// request. Instead, the handler that settles a request while no
/// acknowledgement is being written writes one `basic.ack` with
/// `multiple = true` up to the newest request before which every request is
/// settled; handlers that settle theirs meanwhile leave them to it, and it
/// goes on until none is left. So batches grow with the load, without a
/// timer or a task of their own, and a lone request is acknowledged at once.
/// Where a write returns as soon as the client library has queued it
/// (amqprs), the writing handler first lets the handlers that can run settle
/// theirs ([`RequestChannel::gather_acknowledgements`]: one task switch,
/// only while other requests of the session run); without it nearly every
/// acknowledgement went out alone there.
///
/// A request settled while an earlier one still runs is acknowledged on its
/// own (`multiple = false`): a slow request never holds back the prefetch
/// credit of those behind it.
///
/// Acknowledgements are written on the channel directly (see
/// [`RequestChannel::acknowledge`] for why).
#[derive(Debug, Default)]
pub(crate) struct Acknowledgements {
    state: Mutex<Ledger>,
}

impl Acknowledgements {
    /// Records a delivery: every request is recorded, in delivery order,
    /// before its handler starts.
    pub(crate) fn received(&self, tag: DeliveryTag) {
        self.lock().open.push_back((tag, Progress::Running));
    }

    /// Settles the request `tag` as `disposition` says, once its reply (if
    /// any) is written, writing on `channel`.
    ///
    /// `Ack` returns once the acknowledgement is written, or left to the
    /// handler writing the others. The rest go out at once, on their own, and
    /// leave the ledger once written, so that no batch covers a request
    /// before the broker has it rejected or requeued.
    pub(crate) async fn settle(
        &self,
        tag: RequestTag,
        disposition: Disposition,
        channel: &RequestChannel,
    ) {
        if disposition == Disposition::Ack {
            return self.acknowledge(tag.number(), channel).await;
        }
        disposition.apply(&tag).await;
        self.lock().forget(tag.number());
    }

    async fn acknowledge(&self, tag: DeliveryTag, channel: &RequestChannel) {
        let others_running = {
            let mut ledger = self.lock();
            ledger.done(tag);
            if ledger.writing {
                return;
            }
            ledger.writing = true;
            ledger.running()
        };
        let mut writing = Writing(Some(self));
        // Where a write returns before it reaches the socket (amqprs), the
        // handlers ready now settle theirs first, into this batch; a lone
        // request has none to wait for.
        if others_running {
            channel.gather_acknowledgements().await;
        }
        loop {
            let batch = {
                let mut ledger = self.lock();
                let batch = ledger.next_batch();
                if batch.is_empty() {
                    // In the same critical section that found nothing left,
                    // so that a request settled from now on is written by
                    // its own handler.
                    ledger.writing = false;
                    writing.0 = None;
                    return;
                }
                batch
            };
            if let Err(error) = write(&batch, channel).await {
                debug!(%error, "could not acknowledge requests; the broker will redeliver them");
                return;
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        // The ledger is consistent between statements: a panic elsewhere
        // while it was locked leaves nothing half-done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes the acknowledgements of `batch`, straight on the channel (see
/// [`RequestChannel::acknowledge`]).
async fn write(batch: &Batch, channel: &RequestChannel) -> Result<(), AmqpError> {
    if let Some(tag) = batch.through {
        channel.acknowledge(tag, true).await?;
    }
    for &tag in &batch.singles {
        channel.acknowledge(tag, false).await?;
    }
    Ok(())
}

/// Hands the writing back however the writer ends (a write failed, or its
/// task was aborted): another handler may then write.
struct Writing<'a>(Option<&'a Acknowledgements>);

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Some(acknowledgements) = self.0 {
            acknowledgements.lock().writing = false;
        }
    }
}

/// Where each request of a session stands.
#[derive(Debug, Default)]
struct Ledger {
    /// The requests received and not yet settled, oldest first (delivery
    /// tags grow with each delivery on a channel): those still running and
    /// those to acknowledge. At most the prefetch, however long one runs.
    open: VecDeque<(DeliveryTag, Progress)>,
    /// A handler is writing acknowledgements.
    writing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// Its handler runs.
    Running,
    /// Handled and replied to: to acknowledge.
    Done,
}

/// The acknowledgements to write next.
#[derive(Debug, Default, PartialEq, Eq)]
struct Batch {
    /// One acknowledgement with `multiple = true` up to this request.
    through: Option<DeliveryTag>,
    /// Requests acknowledged on their own: they wait behind one that runs.
    singles: Vec<DeliveryTag>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.through.is_none() && self.singles.is_empty()
    }
}

impl Ledger {
    fn find(&self, tag: DeliveryTag) -> Option<usize> {
        self.open.binary_search_by_key(&tag, |&(tag, _)| tag).ok()
    }

    /// Marks a request to acknowledge. Not found: already settled.
    fn done(&mut self, tag: DeliveryTag) {
        if let Some(at) = self.find(tag) {
            self.open[at].1 = Progress::Done;
        }
    }

    /// Whether a request's handler still runs.
    fn running(&self) -> bool {
        self.open
            .iter()
            .any(|&(_, progress)| progress == Progress::Running)
    }

    /// Removes a request settled otherwise (rejected or requeued).
    fn forget(&mut self, tag: DeliveryTag) {
        if let Some(at) = self.find(tag) {
            self.open.remove(at);
        }
    }

    /// Takes the acknowledgements due: the done requests from the oldest on,
    /// together, up to the newest (which the broker still holds
    /// unacknowledged, as `multiple` requires; the requests settled otherwise
    /// in between are no longer the broker's to acknowledge); and the done
    /// requests behind a running one, on their own.
    fn next_batch(&mut self) -> Batch {
        let mut batch = Batch::default();
        while let Some(&(tag, Progress::Done)) = self.open.front() {
            batch.through = Some(tag);
            self.open.pop_front();
        }
        if self.open.len() > 1 {
            self.open.retain(|&(tag, progress)| match progress {
                Progress::Running => true,
                Progress::Done => {
                    batch.singles.push(tag);
                    false
                }
            });
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::{Batch, Ledger, Progress};

    use Progress::{Done, Running};

    /// A ledger of requests 1, 2, ...
    fn ledger(progress: &[Progress]) -> Ledger {
        Ledger {
            open: (1..).zip(progress.iter().copied()).collect(),
            writing: false,
        }
    }

    fn through(tag: u64) -> Batch {
        Batch {
            through: Some(tag),
            singles: vec![],
        }
    }

    #[test]
    fn a_batch_waits_for_others_only_while_others_run() {
        assert!(!ledger(&[Done]).running());
        assert!(!ledger(&[Done, Done]).running());
        assert!(ledger(&[Done, Running]).running());
    }

    #[test]
    fn requests_done_in_order_are_acknowledged_together() {
        let mut ledger = ledger(&[Done, Done, Done, Running]);
        assert_eq!(ledger.next_batch(), through(3));
        assert_eq!(ledger.open, [(4, Running)]);
        assert!(ledger.next_batch().is_empty());
    }

    #[test]
    fn requests_behind_a_running_one_are_acknowledged_on_their_own_once() {
        let mut ledger = ledger(&[Done, Running, Done, Done]);
        assert_eq!(
            ledger.next_batch(),
            Batch {
                through: Some(1),
                singles: vec![3, 4]
            }
        );
        assert!(ledger.next_batch().is_empty());
        // Once the running one is done, the batch names it alone: `multiple`
        // must name a request the broker still holds.
        ledger.done(2);
        assert_eq!(ledger.next_batch(), through(2));
        assert!(ledger.open.is_empty());
    }

    #[test]
    fn a_batch_spans_requests_settled_otherwise() {
        let mut ledger = ledger(&[Running, Running, Running, Running]);
        ledger.forget(2);
        ledger.forget(4);
        ledger.done(1);
        ledger.done(3);
        assert_eq!(ledger.next_batch(), through(3));
        assert!(ledger.open.is_empty());
    }

    #[test]
    fn a_long_running_request_keeps_the_ledger_small() {
        let mut ledger = ledger(&[Running]);
        for tag in 2..1000 {
            ledger.open.push_back((tag, Running));
            if tag % 3 == 0 {
                ledger.forget(tag);
            } else {
                ledger.done(tag);
            }
            assert_eq!(ledger.next_batch().singles.len(), usize::from(tag % 3 != 0));
            assert_eq!(ledger.open, [(1, Running)]);
        }
    }

    #[test]
    fn unknown_requests_change_nothing() {
        let mut ledger = ledger(&[Running, Running]);
        ledger.done(7);
        ledger.forget(9);
        assert_eq!(ledger.open, [(1, Running), (2, Running)]);
        assert!(ledger.next_batch().is_empty());
    }
}
