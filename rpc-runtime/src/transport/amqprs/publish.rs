//! Publishing requests, and seeing every publication to its end.
//!
//! Requests are published `mandatory` with publisher confirms (see
//! [`mandatory`](crate::protocol::request::mandatory)). A call publishes
//! its request and awaits the broker's confirmation itself, in its own
//! task, as on lapin: its reply, registered in the table of pending calls
//! before the request went out, is kept there meanwhile, so waiting for the
//! confirmation first never delays the reply.
//!
//! amqprs has no confirmation per publication, only its channel callback's
//! `basic.ack` and `basic.nack` (one delivery tag, or every one up to it
//! with `multiple`). So publications are numbered here, as the broker
//! numbers them (from 1 after `confirm.select`), under an async lock held
//! from a number's choice until amqprs has queued the request's frames,
//! which the wire follows; the callback resolves each number's waiter
//! ([`Confirms`]). A channel that ends (closed, or its connection lost)
//! drops its callback, which ends every waiter: those requests are
//! [`Lost`](Verdict::Lost).
//!
//! The broker returns (`basic.return`) a request that no queue takes, then
//! confirms it. The callback routes a returned request by its own
//! `correlation_id` to the call that sent it (through a [`ReturnedTo`], the
//! table of pending calls) as the return arrives, and marks the next
//! confirmation as carrying a return, as lapin does. One-way requests have
//! no correlation id: their channel's task publishes them one at a time, so
//! that the confirmation carrying a return there is always the one
//! request's.
//!
//! Unlike lapin, amqprs keeps nothing for a confirmation no one waits for:
//! a call that stops waiting (it timed out, or its future was dropped)
//! drops its publication, and the callback's answer for it finds no waiter.

use super::{AmqpChannel, link::Link, properties};
use crate::protocol::request::mandatory;
pub(crate) use crate::transport::shared::{Request, ReturnedTo, Verdict};
use amqprs::channel::{BasicPublishArguments, ConfirmSelectArguments};
use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::debug;

/// What a confirmation said.
#[derive(Debug, Clone, Copy)]
struct Confirmed {
    /// `basic.ack` rather than `basic.nack`.
    acked: bool,
    /// A request was returned since the previous confirmation.
    carried_return: bool,
}

/// A channel's publications waiting for their confirmation, by number;
/// resolved by the channel's callback.
#[derive(Default)]
pub(super) struct Confirms {
    waiting: BTreeMap<u64, oneshot::Sender<Confirmed>>,
    /// A request was returned, and no confirmation has come since.
    returned: bool,
    /// The channel ended: nothing more will be resolved.
    ended: bool,
}

impl Confirms {
    /// Waits for publication `number`'s confirmation; `None` if the channel
    /// has ended.
    fn wait_for(&mut self, number: u64) -> Option<oneshot::Receiver<Confirmed>> {
        if self.ended {
            return None;
        }
        let (confirmed, confirmation) = oneshot::channel();
        self.waiting.insert(number, confirmed);
        Some(confirmation)
    }

    /// Publication `number` was not written after all.
    fn forget(&mut self, number: u64) {
        self.waiting.remove(&number);
    }

    /// `basic.ack` (`acked`) or `basic.nack` of `tag`, and with `multiple`
    /// of every publication before it. A return since the previous
    /// confirmation is carried by the first one resolved, as lapin does.
    pub(super) fn resolve(&mut self, tag: u64, multiple: bool, acked: bool) {
        let mut carried_return = std::mem::take(&mut self.returned);
        let mut send = |confirmed: oneshot::Sender<Confirmed>| {
            // Its call may have stopped waiting.
            let _ = confirmed.send(Confirmed {
                acked,
                carried_return: std::mem::take(&mut carried_return),
            });
        };
        if multiple {
            let later = self.waiting.split_off(&tag.saturating_add(1));
            for (_, confirmed) in std::mem::replace(&mut self.waiting, later) {
                send(confirmed);
            }
        } else if let Some(confirmed) = self.waiting.remove(&tag) {
            send(confirmed);
        }
    }

    /// A `basic.return` came.
    pub(super) fn returned(&mut self) {
        self.returned = true;
    }

    /// The channel ended: every waiter ends (dropped, its publication is
    /// [`Lost`](Verdict::Lost)).
    pub(super) fn end(&mut self) {
        self.ended = true;
        self.waiting.clear();
    }
}

/// A channel for requests, with publisher confirms if `confirms`.
pub(super) async fn open_channel(
    link: &Link,
    confirms: bool,
) -> Result<AmqpChannel, super::AmqpError> {
    let channel = AmqpChannel::open(link).await?;
    if confirms {
        channel
            .amqp()
            .confirm_select(ConfirmSelectArguments::default())
            .await
            .map_err(|error| channel.error(error))?;
    }
    Ok(channel)
}

/// A channel for requests, with what its publications share.
struct Publisher {
    channel: AmqpChannel,
    confirms: bool,
    /// The next publication's number, locked from its choice until its
    /// frames are queued (see the module doc).
    next: Mutex<u64>,
}

impl Publisher {
    fn new(channel: AmqpChannel, confirms: bool, returned: ReturnedTo) -> Self {
        // Set once: the channel is this publisher's alone.
        let _ = channel.state.returned_to.set(returned);
        Self {
            channel,
            confirms,
            next: Mutex::new(1),
        }
    }

    /// Writes `request`, then waits for its confirmation.
    async fn publish(&self, request: Request) -> Verdict {
        let Request {
            queue,
            body,
            properties,
        } = request;
        let properties = match properties::request(properties)
            .and_then(|amqp| properties::short(&queue, "queue name").map(|_| amqp))
        {
            Ok(properties) => properties,
            Err(error) => {
                debug!(%error, "a request that cannot be published");
                return Verdict::NotSent;
            }
        };
        let arguments = BasicPublishArguments {
            exchange: String::new(),
            routing_key: queue.to_string(),
            mandatory: mandatory(self.confirms),
            immediate: false,
        };
        // amqprs takes the body by value: a copy of the call's, which it
        // keeps for a retry.
        let body = body.to_vec();
        let amqp = self.channel.amqp();
        if !self.confirms {
            if !self.channel.is_open() {
                return Verdict::NotSent;
            }
            return match amqp.basic_publish(properties, body, arguments).await {
                Ok(()) => Verdict::Taken,
                Err(error) => {
                    debug!(%error, "publishing a request failed");
                    Verdict::NotSent
                }
            };
        }
        let confirmation = {
            let mut next = self.next.lock().await;
            // Checked under the lock: a frame on a channel the broker
            // closed would fail the whole connection.
            if !self.channel.is_open() {
                return Verdict::NotSent;
            }
            let number = *next;
            // Before the write: its confirmation may come before the write
            // returns.
            let Some(confirmation) = self.channel.confirms().wait_for(number) else {
                return Verdict::NotSent;
            };
            if let Err(error) = amqp.basic_publish(properties, body, arguments).await {
                self.channel.confirms().forget(number);
                debug!(%error, "publishing a request failed");
                return Verdict::NotSent;
            }
            *next += 1;
            confirmation
        };
        match confirmation.await {
            Ok(Confirmed { acked: false, .. }) => Verdict::Refused,
            Ok(Confirmed {
                acked: true,
                carried_return: true,
            }) => Verdict::Returned,
            Ok(Confirmed { acked: true, .. }) => Verdict::Taken,
            Err(_) => {
                debug!("a request's confirmation failed with its channel");
                Verdict::Lost
            }
        }
    }

    async fn close(&self) {
        self.channel.close("session over").await;
    }
}

/// A request from its write to its confirmation.
type Publishing = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// The channel calls publish their requests on.
pub(crate) struct CallPublisher(Arc<Publisher>);

impl CallPublisher {
    /// A publisher for calls on `channel`, whose confirm mode is
    /// `confirms`; requests the broker returns go to `returned`.
    pub(super) fn new(channel: AmqpChannel, confirms: bool, returned: ReturnedTo) -> Self {
        Self(Arc::new(Publisher::new(channel, confirms, returned)))
    }

    /// Opens a channel for calls on `link`.
    pub(crate) async fn open(
        link: &Link,
        confirms: bool,
        returned: ReturnedTo,
    ) -> Result<Self, super::AmqpError> {
        Ok(Self::new(
            open_channel(link, confirms).await?,
            confirms,
            returned,
        ))
    }

    /// Closes the channel.
    pub(crate) async fn close(&self) {
        self.0.close().await;
    }

    /// Publishes a call's request; the returned future (nothing happens
    /// until it is polled) resolves to the broker's verdict. Dropped before
    /// that, its confirmation finds no one waiting (see the module doc).
    pub(crate) fn publish(&self, request: Request) -> Publication {
        let publisher = self.0.clone();
        Publication(Some(Box::pin(
            async move { publisher.publish(request).await },
        )))
    }
}

/// A call's request on its way; see [`CallPublisher::publish`].
pub(crate) struct Publication(Option<Publishing>);

impl Future for Publication {
    type Output = Verdict;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Verdict> {
        let Some(publishing) = self.0.as_mut() else {
            return Poll::Ready(Verdict::NotSent);
        };
        let verdict = std::task::ready!(publishing.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(verdict)
    }
}

/// The channel one-way requests are published on, one at a time.
pub(crate) struct OneWayPublisher {
    publisher: Arc<Publisher>,
    to_publish: mpsc::UnboundedSender<(Request, oneshot::Sender<Verdict>)>,
}

impl OneWayPublisher {
    /// Opens a channel for one-way requests on `link`.
    pub(crate) async fn open(
        link: &Link,
        confirms: bool,
        returned: ReturnedTo,
    ) -> Result<Self, super::AmqpError> {
        let channel = open_channel(link, confirms).await?;
        let publisher = Arc::new(Publisher::new(channel, confirms, returned));
        let (to_publish, requests) = mpsc::unbounded_channel();
        tokio::spawn(publish_one_by_one(publisher.clone(), requests));
        Ok(Self {
            publisher,
            to_publish,
        })
    }

    /// Closes the channel.
    pub(crate) async fn close(&self) {
        self.publisher.close().await;
    }

    /// Publishes a one-way request and waits for the broker's verdict.
    pub(crate) async fn publish(&self, request: Request) -> Verdict {
        let (verdict, receive) = oneshot::channel();
        if self.to_publish.send((request, verdict)).is_err() {
            return Verdict::NotSent;
        }
        receive.await.unwrap_or(Verdict::Lost)
    }
}

/// The task of a channel for one-way requests: the next request is written
/// only once the previous one is confirmed.
async fn publish_one_by_one(
    publisher: Arc<Publisher>,
    mut requests: mpsc::UnboundedReceiver<(Request, oneshot::Sender<Verdict>)>,
) {
    while let Some((request, verdict)) = requests.recv().await {
        // Its caller stopped waiting (timed out, or sent it again on another
        // channel while an earlier request held this one): never written.
        if verdict.is_closed() {
            continue;
        }
        let _ = verdict.send(publisher.publish(request).await);
    }
}
