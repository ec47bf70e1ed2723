//! Publishing requests, and seeing every publisher confirm to its end.
//!
//! Requests are published `mandatory` with publisher confirms. The broker
//! returns (`basic.return`) a request that no queue takes, then confirms it;
//! but lapin hands each returned message to whichever confirmation it
//! resolves next, which is not always the returned request's own when the
//! broker confirms several requests at once. So a returned message is routed
//! by its own `correlation_id` to the call that sent it
//! ([`Pending::returned`]), whichever confirmation carries it. One-way
//! requests have no correlation id: they go through a *serial* publisher,
//! which has one request at a time awaiting its confirmation, so that a
//! returned message there is always that request's.
//!
//! Every publication is seen to its end: by its call, or, once the call stops
//! waiting (its reply came first, it timed out, it was dropped mid-publish),
//! by the publisher's reaper task. lapin keeps confirmations dropped
//! unresolved until `wait_for_confirms`, which would grow without bound, and
//! a returned message they carry must still reach its call.

use crate::pending::Pending;
use lapin::{
    BasicProperties, Channel, Confirmation, PublisherConfirm, options::BasicPublishOptions,
    types::ShortString,
};
use std::{future::Future, pin::Pin, sync::Arc};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};
use tracing::debug;

type Publishing = Pin<Box<dyn Future<Output = lapin::Result<PublisherConfirm>> + Send>>;

/// A channel that requests are published on.
pub(crate) struct Publisher {
    channel: Channel,
    confirms: bool,
    /// For a serial publisher: held from a publication's start to its
    /// confirmation.
    serial: Option<Arc<Mutex<()>>>,
    pending: Arc<Pending>,
    reaper: mpsc::UnboundedSender<Leftover>,
}

/// What the broker said of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The broker took responsibility for the request. `carried_return` says
    /// whether its confirmation carried a returned request: on a serial
    /// publisher, this very one (no queue took it).
    Acked { carried_return: bool },
    /// The broker refused the request.
    Nacked,
    /// The channel failed before the broker answered.
    Lost,
}

impl Publisher {
    /// A publisher on `channel`, whose confirm mode is `confirms`. A `serial`
    /// one publishes one request at a time.
    pub(crate) fn new(
        channel: Channel,
        confirms: bool,
        serial: bool,
        pending: Arc<Pending>,
    ) -> Self {
        let (reaper, leftovers) = mpsc::unbounded_channel();
        tokio::spawn(reap(leftovers, pending.clone()));
        Self {
            channel,
            confirms,
            serial: serial.then(|| Arc::new(Mutex::new(()))),
            pending,
            reaper,
        }
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Starts publishing `body` to `queue` through the default exchange.
    /// Nothing happens until the publication is awaited.
    pub(crate) async fn publish(
        &self,
        queue: ShortString,
        body: Arc<Vec<u8>>,
        properties: BasicProperties,
    ) -> Publication {
        let serial = match &self.serial {
            Some(serial) => Some(serial.clone().lock_owned().await),
            None => None,
        };
        let channel = self.channel.clone();
        // `mandatory` only with confirms: without them, lapin keeps returned
        // messages until `wait_for_confirms`.
        let options = BasicPublishOptions {
            mandatory: self.confirms,
            immediate: false,
        };
        let publishing: Publishing = Box::pin(async move {
            channel
                .basic_publish(ShortString::default(), queue, options, &body, properties)
                .await
        });
        Publication {
            stage: Some(Stage::Publishing(publishing)),
            serial,
            pending: self.pending.clone(),
            reaper: self.reaper.clone(),
        }
    }
}

enum Stage {
    /// The frames are being handed to the connection.
    Publishing(Publishing),
    /// Sent; the broker's confirmation is due.
    Confirming(PublisherConfirm),
}

/// A request on its way to the broker. Dropping it before its confirmation
/// hands the rest to the publisher's reaper.
pub(crate) struct Publication {
    stage: Option<Stage>,
    serial: Option<OwnedMutexGuard<()>>,
    pending: Arc<Pending>,
    reaper: mpsc::UnboundedSender<Leftover>,
}

impl Publication {
    /// Waits until the request is handed to the broker; `Err` means it was
    /// not sent. Cancel-safe.
    pub(crate) async fn sent(&mut self) -> lapin::Result<()> {
        if let Some(Stage::Publishing(publishing)) = &mut self.stage {
            let published = publishing.await;
            self.stage = None;
            self.stage = Some(Stage::Confirming(published?));
        }
        Ok(())
    }

    /// Whether the broker's verdict is still due.
    pub(crate) fn is_pending(&self) -> bool {
        self.stage.is_some()
    }

    /// Waits for the broker's verdict, once sent. Cancel-safe; never resolves
    /// once the verdict was given.
    pub(crate) async fn verdict(&mut self) -> Verdict {
        let verdict = match &mut self.stage {
            Some(Stage::Confirming(confirm)) => judge(confirm.await, &self.pending),
            _ => return std::future::pending().await,
        };
        self.stage = None;
        self.serial = None;
        verdict
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        if let Some(stage) = self.stage.take() {
            // If the reaper is gone, so is the channel, whose confirmations
            // lapin then fails: nothing is left to see to.
            let _ = self.reaper.send(Leftover {
                stage,
                _serial: self.serial.take(),
            });
        }
    }
}

/// Routes a returned request its confirmation carries, and says what the
/// confirmation means for the request it confirms.
fn judge(confirmation: lapin::Result<Confirmation>, pending: &Pending) -> Verdict {
    let (acked, returned) = match confirmation {
        Ok(Confirmation::NotRequested) => {
            return Verdict::Acked {
                carried_return: false,
            };
        }
        Ok(Confirmation::Ack(returned)) => (true, returned),
        Ok(Confirmation::Nack(returned)) => (false, returned),
        Err(error) => {
            debug!(%error, "a request's confirmation failed with its channel");
            return Verdict::Lost;
        }
    };
    let carried_return = returned.is_some();
    if let Some(returned) = returned {
        let correlation_id = returned.delivery.properties.correlation_id().as_ref();
        pending.returned(correlation_id.map(ShortString::as_str));
    }
    if acked {
        Verdict::Acked { carried_return }
    } else {
        Verdict::Nacked
    }
}

/// A publication its call stopped waiting for.
struct Leftover {
    stage: Stage,
    /// A serial publisher's lock, released once the confirmation is in.
    _serial: Option<OwnedMutexGuard<()>>,
}

/// Sees the leftover publications to their end, until the publisher is gone.
async fn reap(mut leftovers: mpsc::UnboundedReceiver<Leftover>, pending: Arc<Pending>) {
    while let Some(leftover) = leftovers.recv().await {
        let confirm = match leftover.stage {
            Stage::Confirming(confirm) => confirm,
            Stage::Publishing(publishing) => match publishing.await {
                Ok(confirm) => confirm,
                Err(_) => continue,
            },
        };
        judge(confirm.await, &pending);
    }
}
