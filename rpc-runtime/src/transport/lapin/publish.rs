//! Publishing requests, and seeing every publication to its end.
//!
//! Requests are published `mandatory` with publisher confirms (see
//! [`mandatory`](crate::protocol::request::mandatory)). A call
//! publishes its request and awaits the broker's confirmation itself, in its
//! own task, as hand-written lapin code would: its reply, registered in the
//! table of pending calls before the request went out, is kept there
//! meanwhile, so waiting for the confirmation first never delays the reply.
//!
//! The broker returns (`basic.return`) a request that no queue takes, then
//! confirms it; but lapin hands each returned message to whichever
//! confirmation it resolves next, which is not always the returned request's
//! own when the broker confirms several requests at once. So a returned
//! message is routed by its own `correlation_id` to the call that sent it
//! (through a [`ReturnedTo`], the table of pending calls), whichever
//! confirmation carries it. One-way
//! requests have no correlation id: their channel's task publishes them one
//! at a time, so that a returned message there is always the one request's
//! awaiting confirmation.
//!
//! Every confirmation is awaited to its end: lapin keeps those dropped
//! unresolved until `wait_for_confirms`, which would grow without bound, and
//! one of them may carry another call's returned request.
//!
//! **What a call that gives up leaves behind.** lapin's `basic_publish`
//! does all its work at its first poll: it registers the request's
//! confirmation (with confirms) and queues its frames on the connection;
//! what it awaits afterwards is only their write to the socket. From then
//! on the request goes out whatever becomes of the future, and its
//! confirmation must be awaited; before, lapin holds nothing of it. So a
//! publication first waits for room in its channel's window ([`WINDOW`]
//! publications in lapin's hands: queued there and not yet confirmed, or
//! without confirms not yet written to the socket). A call that stops
//! waiting (it timed out, or its future was dropped) before its request
//! had room takes the request back: it is never sent, and nothing of it is
//! kept. Only a publication already in lapin's hands goes to its channel's
//! task, which finishes it: a window's worth per channel at most, whatever
//! the broker does. (Without the window, a broker that stopped reading, as
//! under a resource alarm, left every request of the calls that timed out
//! meanwhile queued in lapin, some 5 KB each, and got them all once it read
//! again, ahead of the next call.) A request that had to wait for room has
//! its `expiration` set again as it is handed to lapin: the time its caller
//! has left then. One that finds room at once (always, but while the broker
//! does not read) keeps the one set as the call was made, microseconds
//! before, and costs one box, as before the window.

use super::{link::Link, properties};
use crate::protocol::request::mandatory;
pub(crate) use crate::transport::shared::{Request, ReturnedTo, Verdict};
use futures_util::{StreamExt, stream::FuturesUnordered};
use lapin::{
    Channel, Confirmation,
    options::{BasicPublishOptions, ConfirmSelectOptions},
    types::ShortString,
};
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};
use tokio::{
    sync::{AcquireError, OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    time::Instant,
};
use tracing::debug;

/// A channel for requests, with publisher confirms if `confirms`.
pub(super) async fn open_channel(link: &Link, confirms: bool) -> lapin::Result<Channel> {
    let channel = link.amqp.create_channel().await?;
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
    }
    Ok(channel)
}

/// A request from its write to its confirmation, boxed once where it is
/// made: only the box moves, not the kilobyte of lapin's state inside.
type Publishing = Pin<Box<dyn Future<Output = Verdict> + Send>>;

/// A publication's wait for room in its channel's window.
type Turn = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// How many of a channel's requests may be in lapin's hands at once: handed
/// to lapin and not yet confirmed (without confirms: not yet written to the
/// socket). The others wait for room here, where a call that gives up
/// takes its request back (see the module doc). Far above the calls in
/// flight at full speed (256 in the load test), where confirms come within
/// milliseconds; while the broker does not read (a resource alarm), it is
/// what the library keeps, and what the broker gets once it reads again:
/// some kilobytes a request.
pub(crate) const WINDOW: usize = 1024;

/// What a channel's publications share.
struct Shared {
    channel: Channel,
    confirms: bool,
    returned: ReturnedTo,
    /// Room for [`WINDOW`] publications in lapin's hands.
    window: Arc<Semaphore>,
}

/// The channel calls publish their requests on.
pub(crate) struct CallPublisher {
    /// Shared by the publications: a lapin `Channel` is some fifteen
    /// reference counts to copy, one `Arc` is one.
    shared: Arc<Shared>,
    /// The publications that their calls stopped waiting for.
    abandoned: mpsc::UnboundedSender<Publishing>,
}

impl CallPublisher {
    /// A publisher for calls on `channel`, whose confirm mode is
    /// `confirms`; requests the broker returns go to `returned`.
    pub(super) fn new(channel: Channel, confirms: bool, returned: ReturnedTo) -> Self {
        let (abandoned, publications) = mpsc::unbounded_channel();
        tokio::spawn(finish_abandoned(publications));
        Self {
            shared: Arc::new(Shared {
                channel,
                confirms,
                returned,
                window: Arc::new(Semaphore::new(WINDOW)),
            }),
            abandoned,
        }
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
        let _ = self.shared.channel.close(200, "session over".into()).await;
    }

    /// Publishes a call's request, whose caller gives up at `expires`; the
    /// returned future (nothing happens until it is polled) resolves to the
    /// broker's verdict. Dropped before it is first polled, or while it
    /// waits for room in the channel's window, it is never written (and a
    /// request that waited for room has its `expiration` set to the time
    /// left when it is written); dropped after, it hands the publication to
    /// the channel's task.
    pub(crate) fn publish(&self, request: Request, expires: Option<Instant>) -> Publication {
        // The usual case, room at once: one box, as without a window.
        let stage = match self.shared.window.clone().try_acquire_owned() {
            Ok(room) => Stage::Publishing {
                publishing: publishing(self.shared.clone(), request, room),
                started: false,
            },
            Err(_) => Stage::Queued(Box::new(Queued {
                request: Some(request),
                expires,
                turn: None,
            })),
        };
        Publication {
            stage: Some(stage),
            shared: self.shared.clone(),
            abandoned: self.abandoned.clone(),
        }
    }
}

/// `request`'s publication, holding `room` in the window until lapin is
/// done with it.
fn publishing(shared: Arc<Shared>, request: Request, room: OwnedSemaphorePermit) -> Publishing {
    Box::pin(async move {
        let verdict = publish(&shared.channel, shared.confirms, request, &*shared.returned).await;
        drop(room);
        verdict
    })
}

/// A call's request on its way; see [`CallPublisher::publish`].
pub(crate) struct Publication {
    /// `None` once it has its verdict.
    stage: Option<Stage>,
    shared: Arc<Shared>,
    abandoned: mpsc::UnboundedSender<Publishing>,
}

/// Where a [`Publication`] is.
enum Stage {
    /// Waiting for room in the channel's window: nothing is in lapin's
    /// hands yet. Boxed: rare, and a call's future holds this.
    Queued(Box<Queued>),
    /// With its room; once `started` (polled), in lapin's hands, which has
    /// queued its frames and counts on its confirmation being awaited.
    Publishing {
        publishing: Publishing,
        started: bool,
    },
}

/// A request waiting for room in its channel's window.
struct Queued {
    request: Option<Request>,
    expires: Option<Instant>,
    /// The wait, once begun.
    turn: Option<Turn>,
}

impl Publication {
    /// On lapin every verdict wakes a publication (its confirmation is one
    /// of lapin's futures): nothing to change. amqprs's transport lets a
    /// plain `basic.ack` wake a call's publication only after this.
    pub(crate) fn wake_on_ack(&mut self) {}
}

impl Future for Publication {
    type Output = Verdict;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Verdict> {
        let this = &mut *self;
        loop {
            match this.stage.as_mut() {
                None => return Poll::Ready(Verdict::NotSent),
                Some(Stage::Queued(queued)) => {
                    let window = &this.shared.window;
                    let turn = queued
                        .turn
                        .get_or_insert_with(|| Box::pin(window.clone().acquire_owned()));
                    let room = std::task::ready!(turn.as_mut().poll(cx)).ok();
                    let (Some(room), Some(mut request)) = (room, queued.request.take()) else {
                        this.stage = None;
                        return Poll::Ready(Verdict::NotSent);
                    };
                    // It waited: it expires with its caller, from now.
                    request.properties.expire_at(queued.expires);
                    this.stage = Some(Stage::Publishing {
                        publishing: publishing(this.shared.clone(), request, room),
                        started: false,
                    });
                }
                Some(Stage::Publishing {
                    publishing,
                    started,
                }) => {
                    *started = true;
                    let verdict = std::task::ready!(publishing.as_mut().poll(cx));
                    this.stage = None;
                    return Poll::Ready(verdict);
                }
            }
        }
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        // Never polled, or still waiting for room: dropped with its request,
        // never written.
        if let Some(Stage::Publishing {
            publishing,
            started: true,
        }) = self.stage.take()
        {
            // Gone with its session if the send fails: lapin then drops the
            // channel's confirmations itself.
            let _ = self.abandoned.send(publishing);
        }
    }
}

/// The task of a channel for calls: finishes the publications that their
/// calls stopped waiting for.
async fn finish_abandoned(mut publications: mpsc::UnboundedReceiver<Publishing>) {
    let mut unfinished = FuturesUnordered::new();
    let mut open = true;
    while open || !unfinished.is_empty() {
        tokio::select! {
            publication = publications.recv(), if open => match publication {
                Some(publication) => unfinished.push(publication),
                None => open = false,
            },
            Some(_) = unfinished.next(), if !unfinished.is_empty() => {}
        }
    }
}

/// The channel one-way requests are published on, one at a time.
pub(crate) struct OneWayPublisher {
    channel: Channel,
    to_publish: mpsc::UnboundedSender<OneWay>,
}

/// A one-way request for its channel's task: the request, when its caller
/// gives up (if it set a timeout), and where its verdict goes.
type OneWay = (Request, Option<Instant>, oneshot::Sender<Verdict>);

impl OneWayPublisher {
    /// Opens a channel for one-way requests on `link`.
    pub(crate) async fn open(
        link: &Link,
        confirms: bool,
        returned: ReturnedTo,
    ) -> Result<Self, super::AmqpError> {
        let channel = open_channel(link, confirms).await?;
        let (to_publish, requests) = mpsc::unbounded_channel();
        tokio::spawn(publish_one_by_one(
            channel.clone(),
            confirms,
            returned,
            requests,
        ));
        Ok(Self {
            channel,
            to_publish,
        })
    }

    /// Closes the channel.
    pub(crate) async fn close(&self) {
        let _ = self.channel.close(200, "session over".into()).await;
    }

    /// Publishes a one-way request, whose caller gives up at `expires`, and
    /// waits for the broker's verdict.
    pub(crate) async fn publish(&self, request: Request, expires: Option<Instant>) -> Verdict {
        let (verdict, receive) = oneshot::channel();
        if self.to_publish.send((request, expires, verdict)).is_err() {
            return Verdict::NotSent;
        }
        receive.await.unwrap_or(Verdict::Lost)
    }
}

/// The task of a channel for one-way requests: the next request is written
/// only once the previous one is confirmed.
async fn publish_one_by_one(
    channel: Channel,
    confirms: bool,
    returned: ReturnedTo,
    mut requests: mpsc::UnboundedReceiver<OneWay>,
) {
    while let Some((mut request, expires, verdict)) = requests.recv().await {
        // Its caller stopped waiting (timed out, or sent it again on another
        // channel while an earlier request held this one): never written.
        if verdict.is_closed() {
            continue;
        }
        // It may have waited here behind others: it expires with its caller.
        request.properties.expire_at(expires);
        let _ = verdict.send(publish(&channel, confirms, request, &*returned).await);
    }
}

/// Writes `request`, then waits for its confirmation; routes a returned
/// request the confirmation carries by its correlation id.
async fn publish(
    channel: &Channel,
    confirms: bool,
    request: Request,
    returned_to: &(dyn Fn(Option<&str>) + Send + Sync),
) -> Verdict {
    let options = BasicPublishOptions {
        mandatory: mandatory(confirms),
        immediate: false,
    };
    let written = channel
        .basic_publish(
            ShortString::default(),
            ShortString::from(&*request.queue),
            options,
            &request.body,
            properties::request(request.properties),
        )
        .await;
    let confirm = match written {
        Ok(confirm) => confirm,
        Err(error) => {
            debug!(%error, "publishing a request failed");
            return Verdict::NotSent;
        }
    };
    let (acked, returned) = match confirm.await {
        Ok(Confirmation::NotRequested) => return Verdict::Taken,
        Ok(Confirmation::Ack(returned)) => (true, returned),
        Ok(Confirmation::Nack(returned)) => (false, returned),
        Err(error) => {
            debug!(%error, "a request's confirmation failed with its channel");
            return Verdict::Lost;
        }
    };
    let carried_return = returned.is_some();
    if let Some(returned) = returned {
        returned_to(properties::IncomingProperties::correlation_id_of(
            &returned.delivery.properties,
        ));
    }
    match (acked, carried_return) {
        (false, _) => Verdict::Refused,
        (true, true) => Verdict::Returned,
        (true, false) => Verdict::Taken,
    }
}
