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
//! which the wire follows; the callback resolves each number's slot
//! ([`Confirms`]). A channel that ends (closed, or its connection lost)
//! drops its callback, which ends every slot still waiting: those requests are
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
//! **A plain `basic.ack` does not wake a call.** The verdict is kept in
//! its publication's slot, and the call reads it when something else
//! wakes it: its reply (which proves the broker took the request anyway),
//! its confirm patience, or its deadline. A `basic.nack`, a confirmation
//! carrying a return and a channel that ends do wake it, as does any
//! verdict for a call that has nothing else to wait for
//! ([`Publication::wake_on_ack`]) and for one-way requests. At one call in
//! flight, where the broker's acknowledgement comes alone, that saves
//! waking the call between its write and its reply.
//!
//! **What a call that gives up leaves behind.** amqprs's `basic_publish`
//! queues the request's frames as one message for the connection's writer
//! task (a queue of 8,192 messages), with tokio's `Sender::send`, which is
//! cancel-safe: dropped before, nothing is sent; once queued, the request
//! goes out whatever becomes of the future. Before its write, a publication
//! waits (with confirms) for room in its channel's window ([`WINDOW`]
//! publications written and not yet confirmed), then for the lock: a call
//! that stops waiting (it timed out, or its future was dropped) meanwhile
//! takes its request back, never sent. Unlike lapin, amqprs keeps nothing
//! for a confirmation no one waits for: a call that stops waiting after the
//! write drops its publication, whose slot keeps only its room in the
//! window until the confirmation comes (or the channel ends), which then
//! finds no waiter. So a broker that stops reading (a resource alarm) gets,
//! once it reads again, a window's worth of requests per channel at most.
//! Without confirms there is no window: amqprs's queue is the only bound. A
//! request that had to wait for room has its `expiration` set again then:
//! the time its caller has left.

use super::{AmqpChannel, link::Link, properties};
use crate::protocol::request::mandatory;
pub(crate) use crate::transport::shared::{Request, ReturnedTo, Verdict};
use amqprs::channel::{BasicPublishArguments, ConfirmSelectArguments};
use std::{
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};
use tokio::{
    sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    time::Instant,
};
use tracing::debug;

/// A publication's place in [`Confirms`].
enum Slot {
    /// Its confirmation has not come; `waker` is its publication's, once
    /// polled.
    Waiting {
        waker: Option<Waker>,
        /// Woken by a plain `basic.ack` too (see the module doc).
        wake_on_ack: bool,
        /// Its room in the channel's window, until its confirmation.
        room: Option<OwnedSemaphorePermit>,
    },
    /// Its publication stopped waiting before its confirmation came: its
    /// room in the window is kept until then.
    Abandoned { _room: Option<OwnedSemaphorePermit> },
    /// The broker's verdict, not yet read.
    Done(Verdict),
    /// Its verdict was read, or its publication stopped waiting.
    Gone,
}

/// A channel's publications waiting for their confirmation, in the order
/// of their numbers; resolved by the channel's callback.
///
/// Numbers are consecutive (chosen under [`Publisher`]'s lock, and taken
/// back only by the last publication, whose write failed), so a queue
/// indexed from the first one's number finds each without a search. A
/// slot is kept until its verdict is read or its publication is dropped,
/// and the front's are let go as they end.
#[derive(Default)]
pub(super) struct Confirms {
    /// The number of the first of `slots`.
    first: u64,
    slots: VecDeque<Slot>,
    /// A request was returned, and no confirmation has come since.
    returned: bool,
    /// The channel ended: nothing more will be resolved.
    ended: bool,
}

impl Confirms {
    /// Makes room for publication `number`'s verdict, which holds `room` in
    /// the channel's window until it comes; `false` if the channel has
    /// ended.
    fn wait_for(&mut self, number: u64, room: Option<OwnedSemaphorePermit>) -> bool {
        if self.ended {
            return false;
        }
        match number.checked_sub(self.first) {
            // A publication dropped during its write left its slot, and its
            // number, never used: taken over.
            Some(index) if index <= self.slots.len() as u64 && !self.slots.is_empty() => {
                self.slots.truncate(index as usize);
            }
            _ => {
                debug_assert!(self.slots.is_empty(), "publication numbers out of order");
                self.slots.clear();
                self.first = number;
            }
        }
        self.slots.push_back(Slot::Waiting {
            waker: None,
            wake_on_ack: false,
            room,
        });
        true
    }

    /// Publication `number`, the last, was not written after all.
    fn forget(&mut self, number: u64) {
        if number + 1 == self.first + self.slots.len() as u64 {
            self.slots.pop_back();
        }
    }

    fn slot(&mut self, number: u64) -> Option<&mut Slot> {
        let index = usize::try_from(number.checked_sub(self.first)?).ok()?;
        self.slots.get_mut(index)
    }

    /// Publication `number`'s verdict, once it has come; its waker is kept
    /// until then, woken by a plain `basic.ack` only if `wake_on_ack`.
    fn poll(&mut self, number: u64, wake_on_ack: bool, cx: &Context<'_>) -> Poll<Verdict> {
        let Some(slot) = self.slot(number) else {
            return Poll::Ready(Verdict::Lost);
        };
        match slot {
            Slot::Waiting {
                waker,
                wake_on_ack: wakes,
                ..
            } => {
                *wakes = wake_on_ack;
                match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            Slot::Done(verdict) => {
                let verdict = *verdict;
                self.let_go(number);
                Poll::Ready(verdict)
            }
            Slot::Abandoned { .. } | Slot::Gone => Poll::Ready(Verdict::Lost),
        }
    }

    /// Publication `number` no longer needs its slot; unconfirmed, it keeps
    /// its room in the window until its confirmation comes.
    fn let_go(&mut self, number: u64) {
        if let Some(slot) = self.slot(number) {
            *slot = match std::mem::replace(slot, Slot::Gone) {
                Slot::Waiting { room, .. } => Slot::Abandoned { _room: room },
                _ => Slot::Gone,
            };
        }
        self.free_front();
    }

    /// Lets go of the slots at the front that no one needs.
    fn free_front(&mut self) {
        while let Some(Slot::Gone) = self.slots.front() {
            self.slots.pop_front();
            self.first += 1;
        }
    }

    /// `basic.ack` (`acked`) or `basic.nack` of `tag`, and with `multiple`
    /// of every publication before it. A return since the previous
    /// confirmation is carried by the first one resolved, as lapin does.
    pub(super) fn resolve(&mut self, tag: u64, multiple: bool, acked: bool) {
        let mut carried_return = std::mem::take(&mut self.returned);
        let from = if multiple { self.first } else { tag };
        let last = self.first + self.slots.len() as u64;
        for number in from..tag.saturating_add(1).min(last) {
            let verdict = match (acked, std::mem::take(&mut carried_return)) {
                (false, _) => Verdict::Refused,
                (true, true) => Verdict::Returned,
                (true, false) => Verdict::Taken,
            };
            let Some(slot) = self.slot(number) else {
                continue;
            };
            match slot {
                Slot::Waiting {
                    waker, wake_on_ack, ..
                } => {
                    let waker = waker
                        .take()
                        .filter(|_| *wake_on_ack || verdict != Verdict::Taken);
                    *slot = Slot::Done(verdict);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                Slot::Abandoned { .. } => *slot = Slot::Gone,
                Slot::Done(_) | Slot::Gone => {}
            }
        }
        self.free_front();
    }

    /// A `basic.return` came.
    pub(super) fn returned(&mut self) {
        self.returned = true;
    }

    /// The channel ended: every publication still waiting is
    /// [`Lost`](Verdict::Lost), and woken.
    pub(super) fn end(&mut self) {
        self.ended = true;
        for slot in &mut self.slots {
            match slot {
                Slot::Waiting { waker, .. } => {
                    let waker = waker.take();
                    *slot = Slot::Done(Verdict::Lost);
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                }
                Slot::Abandoned { .. } => *slot = Slot::Gone,
                Slot::Done(_) | Slot::Gone => {}
            }
        }
        self.free_front();
    }
}

/// A channel for requests, with publisher confirms if `confirms`.
pub(super) async fn open_channel(
    link: &Link,
    confirms: bool,
) -> Result<AmqpChannel, super::AmqpError> {
    let channel = AmqpChannel::open(link).await?;
    if confirms {
        // Asked in a task of its own, as every question is (see the module
        // doc of `amqprs`): a caller that stops waiting (a channel replaced
        // past its deadline) would drop the waiter amqprs answers, and its
        // dispatcher panics then.
        let amqp = channel.amqp().clone();
        channel
            .ask(async move { amqp.confirm_select(ConfirmSelectArguments::default()).await })
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
    /// Room for [`WINDOW`] publications written and not yet confirmed
    /// (with confirms).
    window: Arc<Semaphore>,
}

/// How many of a channel's requests may be written and not yet confirmed
/// at once (with confirms). The others wait for room here, where a call
/// that gives up takes its request back (see the module doc). Far above the
/// calls in flight at full speed (256 in the load test), where confirms
/// come within milliseconds; while the broker does not read (a resource
/// alarm), it is what the library keeps, and what the broker gets once it
/// reads again.
pub(crate) const WINDOW: usize = 1024;

impl Publisher {
    fn new(channel: AmqpChannel, confirms: bool, returned: ReturnedTo) -> Self {
        // Set once: the channel is this publisher's alone.
        let _ = channel.state.returned_to.set(returned);
        Self {
            channel,
            confirms,
            next: Mutex::new(1),
            window: Arc::new(Semaphore::new(WINDOW)),
        }
    }

    /// Writes `request`, whose caller gives up at `expires` (if it waits
    /// for room in the window, its `expiration` is the time left then): with
    /// confirms, the number the broker will confirm it by.
    async fn write(&self, request: Request, expires: Option<Instant>) -> Written {
        let Request {
            queue,
            body,
            mut properties,
        } = request;
        // Waiting for room (and below for the numbers before it to be
        // written): dropped meanwhile, nothing is written.
        let room = if self.confirms {
            match self.window.clone().try_acquire_owned() {
                Ok(room) => Some(room),
                // No room at once (the broker does not read, as under a
                // resource alarm): once there is, the request expires with
                // its caller from then. (With room at once it keeps the
                // expiration set as the call was made, microseconds ago.)
                Err(_) => match self.window.clone().acquire_owned().await {
                    Ok(room) => {
                        properties.expire_at(expires);
                        Some(room)
                    }
                    Err(_) => return Written::Ended(Verdict::NotSent),
                },
            }
        } else {
            None
        };
        let properties = match properties::request(properties)
            .and_then(|amqp| properties::short(&queue, "queue name").map(|_| amqp))
        {
            Ok(properties) => properties,
            Err(error) => {
                debug!(%error, "a request that cannot be published");
                return Written::Ended(Verdict::NotSent);
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
                return Written::Ended(Verdict::NotSent);
            }
            return match amqp.basic_publish(properties, body, arguments).await {
                Ok(()) => Written::Ended(Verdict::Taken),
                Err(error) => {
                    debug!(%error, "publishing a request failed");
                    Written::Ended(Verdict::NotSent)
                }
            };
        }
        let mut next = self.next.lock().await;
        // Checked under the lock: a frame on a channel the broker closed
        // would fail the whole connection.
        if !self.channel.is_open() {
            return Written::Ended(Verdict::NotSent);
        }
        let number = *next;
        // Before the write: its confirmation may come before the write
        // returns.
        if !self.channel.confirms().wait_for(number, room) {
            return Written::Ended(Verdict::NotSent);
        }
        if let Err(error) = amqp.basic_publish(properties, body, arguments).await {
            self.channel.confirms().forget(number);
            debug!(%error, "publishing a request failed");
            return Written::Ended(Verdict::NotSent);
        }
        *next += 1;
        Written::Confirming(number)
    }

    async fn close(&self) {
        self.channel.close("session over").await;
    }
}

/// What [`Publisher::write`] did.
enum Written {
    /// The request is written; its confirmation is awaited by this number.
    Confirming(u64),
    /// The request's verdict, known without a confirmation.
    Ended(Verdict),
}

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
    /// until it is polled) resolves to the broker's verdict. A plain
    /// `basic.ack` does not wake it (see the module doc): the call learns of
    /// it when its reply or its patience wakes it, unless
    /// [`wake_on_ack`](Publication::wake_on_ack). Dropped before that, its
    /// confirmation finds no one waiting.
    pub(crate) fn publish(&self, request: Request, expires: Option<Instant>) -> Publication {
        Publication::new(self.0.clone(), request, expires, false)
    }
}

/// A request's write ([`Publisher::write`]), boxed: its future holds
/// amqprs's.
type Writing = Pin<Box<dyn Future<Output = Written> + Send>>;

/// A request on its way; see [`CallPublisher::publish`].
pub(crate) struct Publication {
    publisher: Arc<Publisher>,
    stage: Stage,
    wake_on_ack: bool,
}

/// Where a [`Publication`] is.
enum Stage {
    Writing(Writing),
    Confirming(u64),
    Ended,
}

impl Publication {
    fn new(
        publisher: Arc<Publisher>,
        request: Request,
        expires: Option<Instant>,
        wake_on_ack: bool,
    ) -> Self {
        let writer = publisher.clone();
        Self {
            publisher,
            stage: Stage::Writing(Box::pin(
                async move { writer.write(request, expires).await },
            )),
            wake_on_ack,
        }
    }

    /// From now on a plain `basic.ack` wakes this publication too: for a
    /// call that awaits it alone, with no reply to wake it.
    pub(crate) fn wake_on_ack(&mut self) {
        self.wake_on_ack = true;
    }
}

impl Future for Publication {
    type Output = Verdict;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Verdict> {
        let this = &mut *self;
        let verdict = loop {
            match &mut this.stage {
                Stage::Writing(writing) => match std::task::ready!(writing.as_mut().poll(cx)) {
                    Written::Confirming(number) => this.stage = Stage::Confirming(number),
                    Written::Ended(verdict) => break verdict,
                },
                Stage::Confirming(number) => {
                    break std::task::ready!(this.publisher.channel.confirms().poll(
                        *number,
                        this.wake_on_ack,
                        cx
                    ));
                }
                Stage::Ended => return Poll::Ready(Verdict::NotSent),
            }
        };
        this.stage = Stage::Ended;
        if verdict == Verdict::Lost {
            debug!("a request's confirmation failed with its channel");
        }
        Poll::Ready(verdict)
    }
}

impl Drop for Publication {
    /// A publication that stops waiting lets its slot go.
    fn drop(&mut self) {
        if let Stage::Confirming(number) = self.stage {
            self.publisher.channel.confirms().let_go(number);
        }
    }
}

/// The channel one-way requests are published on, one at a time.
pub(crate) struct OneWayPublisher {
    publisher: Arc<Publisher>,
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
    publisher: Arc<Publisher>,
    mut requests: mpsc::UnboundedReceiver<OneWay>,
) {
    while let Some((request, expires, verdict)) = requests.recv().await {
        // Its caller stopped waiting (timed out, or sent it again on another
        // channel while an earlier request held this one): never written.
        if verdict.is_closed() {
            continue;
        }
        let publication = Publication::new(publisher.clone(), request, expires, true);
        let _ = verdict.send(publication.await);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Counted>, Waker) {
        let counted = Arc::new(Counted::default());
        (counted.clone(), Waker::from(counted))
    }

    /// Publications 1 to `n`, each polled once (so waiting, with a waker).
    fn waiting(n: u64, wake_on_ack: bool) -> (Confirms, Vec<Arc<Counted>>) {
        let mut confirms = Confirms::default();
        let mut wakes = Vec::new();
        for number in 1..=n {
            assert!(confirms.wait_for(number, None));
            let (counted, waker) = waker();
            let cx = Context::from_waker(&waker);
            assert!(confirms.poll(number, wake_on_ack, &cx).is_pending());
            wakes.push(counted);
        }
        (confirms, wakes)
    }

    fn verdict(confirms: &mut Confirms, number: u64) -> Poll<Verdict> {
        let (_, waker) = waker();
        confirms.poll(number, false, &Context::from_waker(&waker))
    }

    fn woken(wakes: &[Arc<Counted>]) -> Vec<usize> {
        wakes.iter().map(|c| c.0.load(Ordering::SeqCst)).collect()
    }

    #[test]
    fn a_plain_ack_is_kept_without_waking_a_call() {
        let (mut confirms, wakes) = waiting(3, false);
        confirms.resolve(2, true, true);
        assert_eq!(woken(&wakes), [0, 0, 0]);
        assert_eq!(verdict(&mut confirms, 1), Poll::Ready(Verdict::Taken));
        assert_eq!(verdict(&mut confirms, 2), Poll::Ready(Verdict::Taken));
        assert!(verdict(&mut confirms, 3).is_pending());
        // Read slots at the front are let go.
        assert_eq!((confirms.first, confirms.slots.len()), (3, 1));
    }

    #[test]
    fn a_plain_ack_wakes_a_publication_that_asked_for_it() {
        let (mut confirms, wakes) = waiting(2, true);
        confirms.resolve(1, false, true);
        assert_eq!(woken(&wakes), [1, 0]);
    }

    #[test]
    fn a_nack_a_return_and_an_ended_channel_wake_every_call() {
        let (mut confirms, wakes) = waiting(4, false);
        confirms.returned();
        confirms.resolve(1, false, true);
        confirms.resolve(2, false, false);
        assert_eq!(woken(&wakes), [1, 1, 0, 0]);
        assert_eq!(verdict(&mut confirms, 1), Poll::Ready(Verdict::Returned));
        assert_eq!(verdict(&mut confirms, 2), Poll::Ready(Verdict::Refused));
        confirms.end();
        assert_eq!(woken(&wakes), [1, 1, 1, 1]);
        assert_eq!(verdict(&mut confirms, 4), Poll::Ready(Verdict::Lost));
        assert!(
            !confirms.wait_for(5, None),
            "nothing waits on an ended channel"
        );
    }

    #[test]
    fn a_return_rides_on_the_first_publication_a_multiple_ack_resolves() {
        let (mut confirms, _) = waiting(3, false);
        confirms.returned();
        confirms.resolve(3, true, true);
        assert_eq!(verdict(&mut confirms, 1), Poll::Ready(Verdict::Returned));
        assert_eq!(verdict(&mut confirms, 2), Poll::Ready(Verdict::Taken));
        assert_eq!(verdict(&mut confirms, 3), Poll::Ready(Verdict::Taken));
        assert!(confirms.slots.is_empty());
    }

    #[test]
    fn slots_let_go_out_of_order_are_freed_once_the_front_is() {
        let (mut confirms, _) = waiting(3, false);
        confirms.let_go(2);
        confirms.let_go(3);
        assert_eq!(confirms.slots.len(), 3, "the first still waits");
        confirms.resolve(3, true, true);
        assert_eq!(verdict(&mut confirms, 1), Poll::Ready(Verdict::Taken));
        assert!(confirms.slots.is_empty());
        // The next publication starts the queue again.
        assert!(confirms.wait_for(4, None));
        confirms.resolve(4, false, false);
        assert_eq!(verdict(&mut confirms, 4), Poll::Ready(Verdict::Refused));
    }

    #[test]
    fn a_number_never_written_is_taken_over_by_the_next_publication() {
        // Publication 2 dropped during its write (or its write failed): the
        // next one is numbered 2 again.
        let (mut confirms, _) = waiting(2, false);
        confirms.forget(2);
        assert!(confirms.wait_for(2, None));
        assert!(confirms.wait_for(3, None));
        confirms.wait_for(3, None); // dropped mid-write, its slot left behind
        assert!(confirms.wait_for(3, None));
        assert_eq!(confirms.slots.len(), 3);
        confirms.resolve(3, true, true);
        for number in 1..=3 {
            assert_eq!(verdict(&mut confirms, number), Poll::Ready(Verdict::Taken));
        }
        assert!(confirms.slots.is_empty());
    }
}
