//! Serving one service: its sessions (a channel consuming the request
//! queue), a handler task per request, and the end of each session: lost,
//! or shut down gracefully.
//!
//! Every delivery is handled in its own task, so up to `prefetch` requests
//! run at once (save a lone request's handler, first polled in the
//! consumer's task on a runtime with one worker; see [`Handlers`]). When a
//! session ends with its connection, the requests in flight go back to the
//! queue (they were not acknowledged) and their handlers are aborted; when
//! it ends alone (the broker cancelled the consumer, its channel still
//! open), its handlers may finish and reply first. A graceful shutdown
//! stops consuming, requeues what was received but not started, and lets
//! the requests in flight finish within the shutdown grace. Either wait
//! ends early if the channel is lost meanwhile: the broker then redelivers
//! the requests, and their handlers are aborted as on any lost session.

use super::{
    Config,
    handle::{Handling, InFlight, handle},
    respond::{Responder, requeue_unstarted},
    service::Service,
};
use crate::{
    clock::instant_after,
    connection::Connection,
    session::{Ended, Sessions},
    transport::{
        AmqpError,
        link::Link,
        server::{QueueSettings, Requests, open_session},
    },
};
use std::{
    future::{Future, poll_fn},
    panic::{self, AssertUnwindSafe},
    sync::{Arc, atomic::AtomicUsize},
    task::Poll,
    time::Duration,
};
use tokio::{
    task::{AbortHandle, JoinSet},
    time::Instant,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

/// How long closing the channel may take after the shutdown grace.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often a session whose handlers are finishing (a graceful shutdown,
/// or a consumer the broker cancelled) looks whether its channel is still
/// open. Neither transport tells of a channel's end but through the
/// consumer, which is no longer read then; only those rare waits poll.
const CHANNEL_POLL: Duration = Duration::from_millis(50);

/// One session: a channel consuming the request queue.
pub(crate) struct Session {
    /// Writes on the session's channel; shared by its handlers.
    responder: Arc<Responder>,
    requests: Requests,
}

impl Session {
    /// Declares the request queue and consumes it on `link`.
    pub(crate) async fn open(link: &Link, config: &Config) -> Result<Session, AmqpError> {
        let settings = QueueSettings {
            quorum: config.queue_type == super::QueueType::Quorum,
            delivery_limit: config.delivery_limit,
            dead_letter_queue: config.dead_letter_queue.clone(),
        };
        let (channel, requests) =
            open_session(link, &config.queue, config.prefetch, settings).await?;
        Ok(Session {
            responder: Arc::new(Responder::new(channel)),
            requests,
        })
    }
}

/// A server's sessions, for [`session::keep`](crate::session::keep).
pub(crate) struct ServerSessions<S> {
    pub(crate) handling: Arc<Handling<S>>,
    pub(crate) connection: Connection,
    pub(crate) config: Arc<Config>,
    /// Cancelled to abort the handlers of draining sessions when the
    /// shutdown grace elapses.
    pub(crate) abandon: CancellationToken,
    pub(crate) shutdown: CancellationToken,
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// Sessions that ended while their channel stayed open (the broker
    /// cancelled the consumer): their handlers may still reply, then the
    /// channel is closed.
    pub(crate) draining: JoinSet<()>,
}

/// Why a session stopped consuming.
enum Stopped {
    Lost,
    Shutdown,
}

impl<S: Service> Sessions for ServerSessions<S> {
    type Session = Session;

    async fn open(&mut self, link: &Link, _id: u64) -> Result<Session, AmqpError> {
        let session = Session::open(link, &self.config).await?;
        info!(service = self.config.service, queue = %self.config.queue, "serving again");
        Ok(session)
    }

    async fn run(&mut self, mut session: Session) -> Ended {
        let mut handlers = Handlers::new();
        match self.consume(&mut session, &mut handlers).await {
            Stopped::Shutdown => {
                self.shut_down(session, handlers).await;
                Ended::Stopped
            }
            Stopped::Lost if session.responder.channel().is_open() => {
                let abandon = self.abandon.clone();
                self.draining.spawn(async move {
                    tokio::select! {
                        () = handlers.wait() => {}
                        () = abandon.cancelled() => handlers.abort(),
                        () = channel_lost(&session.responder) => {
                            warn!(in_flight = handlers.len(), "lost the channel of a cancelled consumer; its requests in flight will be redelivered, and their handlers are aborted");
                            handlers.abort();
                        }
                    }
                    session
                        .responder
                        .channel()
                        .close("consumer cancelled")
                        .await;
                });
                Ended::Lost
            }
            // The channel is gone, and with it the requests in flight, which
            // the broker redelivers: their handlers could neither reply nor
            // acknowledge, and would run alongside the redeliveries.
            Stopped::Lost => {
                handlers.abort();
                Ended::Lost
            }
        }
    }

    async fn finish(mut self) {
        // Shut down while no session was up: only draining handlers remain.
        let deadline = instant_after(self.config.shutdown_grace);
        self.finish_draining(deadline).await;
    }

    fn what(&self) -> String {
        format!("the request consumer of queue `{}`", self.config.queue)
    }
}

impl<S: Service> ServerSessions<S> {
    async fn consume(&self, session: &mut Session, handlers: &mut Handlers) -> Stopped {
        // Raced once against the whole loop rather than per request: a
        // `select!` per request would move each delivery once more and poll
        // the token each time. Shutdown, polled first, still stops the loop
        // before it takes another request.
        tokio::select! {
            biased;
            () = self.shutdown.cancelled() => Stopped::Shutdown,
            lost = self.spawn_handlers(session, handlers) => lost,
        }
    }

    /// Hands every request to a handler of its own until the consumer ends.
    async fn spawn_handlers(&self, session: &mut Session, handlers: &mut Handlers) -> Stopped {
        loop {
            match session.requests.next().await {
                Ok(request) => {
                    session.responder.received(&request.delivery);
                    let none_waiting = !session.requests.has_more();
                    handlers
                        .run(
                            handle(
                                self.handling.clone(),
                                session.responder.clone(),
                                request,
                                InFlight::enter(&self.in_flight, &self.handling.metrics.in_flight),
                            ),
                            none_waiting,
                        )
                        .await;
                }
                Err(Some(error)) => {
                    if !self.connection.is_closing() {
                        warn!(%error, queue = %self.config.queue, "lost the request consumer; its requests in flight will be redelivered");
                    }
                    return Stopped::Lost;
                }
                Err(None) => {
                    if !self.connection.is_closing() {
                        warn!(queue = %self.config.queue, "the broker cancelled the request consumer (was the queue deleted?)");
                    }
                    return Stopped::Lost;
                }
            }
        }
    }

    /// Stops consuming, requeues what was received but not started, and
    /// lets the requests in flight finish, all within the shutdown grace:
    /// past it, what is left is abandoned to the broker, which redelivers it.
    async fn shut_down(&mut self, mut session: Session, handlers: Handlers) {
        info!(queue = %self.config.queue, in_flight = handlers.len(), "shutting down");
        let deadline = instant_after(self.config.shutdown_grace);
        let channel = session.responder.channel();
        if let Ok(Ok(())) = tokio::time::timeout_at(deadline, channel.cancel_consumer()).await {
            // After cancel-ok the stream ends; what it still holds was
            // received but not started: back to the queue with it.
            let requeue = async {
                while let Ok(request) = session.requests.next().await {
                    requeue_unstarted(request.delivery).await;
                }
            };
            let _ = tokio::time::timeout_at(deadline, requeue).await;
        }
        tokio::select! {
            finished = tokio::time::timeout_at(deadline, handlers.wait()) => {
                if finished.is_err() {
                    self.abandon(handlers.len());
                    handlers.abort();
                    handlers.wait().await;
                }
            }
            // Their handlers could neither reply nor acknowledge, and would
            // run alongside the redeliveries until the grace ran out.
            () = channel_lost(&session.responder) => {
                warn!(
                    queue = %self.config.queue,
                    in_flight = handlers.len(),
                    "lost the channel while shutting down; the requests in flight will be \
                     redelivered, and their handlers are aborted"
                );
                handlers.abort();
                handlers.wait().await;
            }
        }
        self.finish_draining(deadline).await;
        let close = session.responder.channel().close("server shut down");
        let _ = tokio::time::timeout_at(deadline.max(Instant::now() + CLOSE_GRACE), close).await;
    }

    /// Waits for the draining sessions until `deadline`, then abandons their
    /// handlers.
    async fn finish_draining(&mut self, deadline: Instant) {
        let draining = &mut self.draining;
        let all_done = async { while draining.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, all_done).await.is_err() {
            self.abandon(self.draining.len());
            while self.draining.join_next().await.is_some() {}
        }
    }

    /// Aborts the handlers of draining sessions (each aborts its own, see
    /// `run`): their requests, unacknowledged, go back to the broker when
    /// the channel closes.
    fn abandon(&self, count: usize) {
        warn!(
            count,
            "shutdown grace elapsed; abandoning the requests still running to the broker"
        );
        self.abandon.cancel();
    }
}

/// Resolves once the channel `responder` writes on is closed.
async fn channel_lost(responder: &Responder) {
    let mut poll = tokio::time::interval(CHANNEL_POLL);
    while responder.channel().is_open() {
        poll.tick().await;
    }
}

/// The handlers of one session: tracked, to wait for them, and abortable.
///
/// Cheaper than a `JoinSet` (whose bookkeeping cost a few thousand
/// instructions per request) and than wrapping each handler in a
/// cancellation future (which costs more, on every poll): a task tracker is
/// one counter, and the abort handles live in a vector only the consumer
/// touches, pruned as it grows.
///
/// A request that comes alone (no other handler of the session running, no
/// other delivery waiting) on a runtime with one worker is first polled
/// here, in the consumer's task; one that finishes then (a method with
/// nothing to wait for, as the tutorial's Fibonacci) costs no task, and
/// answers a task switch sooner. Its own task would run on the same
/// thread, right after the consumer yields, so nothing runs later for it.
/// With other requests about, every handler gets its task from the start,
/// so that their acknowledgements go out in batches
/// ([`ack_policy`](super::ack_policy)); with more workers too, where a
/// handler in its own task runs beside the consumer, which then starts the
/// next request at once. On lapin every handler gets its task (see its
/// `Requests::has_more`).
struct Handlers {
    tracker: TaskTracker,
    running: Vec<AbortHandle>,
    /// The runtime has one worker.
    one_worker: bool,
}

impl Handlers {
    fn new() -> Self {
        Self {
            tracker: TaskTracker::new(),
            running: Vec::new(),
            one_worker: tokio::runtime::Handle::current().metrics().num_workers() == 1,
        }
    }

    /// Runs `handler`; `none_waiting`: no other delivery waited behind its
    /// request (with no other handler running, it came alone: see above).
    async fn run(
        &mut self,
        handler: impl Future<Output = ()> + Send + 'static,
        none_waiting: bool,
    ) {
        // Boxed once here, so that the layers of spawning move a pointer
        // rather than the whole future, several times.
        let mut handler = Box::pin(handler);
        let alone = none_waiting && self.tracker.is_empty();
        if alone && self.one_worker {
            // A panic outside the method's own (which the handler catches)
            // ends this handler alone, as it would end its task.
            let first = poll_fn(|cx| {
                Poll::Ready(panic::catch_unwind(AssertUnwindSafe(|| {
                    handler.as_mut().poll(cx)
                })))
            });
            match first.await {
                Ok(Poll::Ready(())) | Err(_) => return,
                // Polled again in its task, which registers its own waker.
                Ok(Poll::Pending) => {}
            }
        }
        if self.running.len() == self.running.capacity() {
            self.running.retain(|handle| !handle.is_finished());
        }
        self.running
            .push(self.tracker.spawn(handler).abort_handle());
    }

    fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Waits until every handler is done (or aborted).
    async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    fn abort(&self) {
        for handle in &self.running {
            handle.abort();
        }
    }
}

impl Drop for Handlers {
    /// Handlers die with their session's task: dropping the server aborts
    /// them, handing their requests back to the broker.
    fn drop(&mut self) {
        self.abort();
    }
}
