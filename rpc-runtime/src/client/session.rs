//! A client's session: its reply consumer, the channel its calls publish
//! on (and, once needed, one for one-way requests), and the task that hands
//! each reply to the call waiting for it.
//!
//! When the session ends (its reply consumer's channel or connection lost)
//! the calls in flight on it fail at once (`Pending::end_session`), and the
//! next session is set up by [`session::keep`](crate::session::keep).
//!
//! A publishing channel is replaced, the session going on, when the broker
//! refuses a request on it or the channel is gone ([`Session::replace_requests`],
//! [`Session::replace_one_way`]): RabbitMQ 3.10 refuses every request a
//! channel publishes to a quorum queue if its first one came while the queue
//! was electing a leader (as when a client reconnects to another node right
//! after losing its own), while a new channel's are taken. With direct
//! reply-to requests must go out on the reply consumer's channel, which is
//! never replaced: such a session keeps its channel until it ends.

use super::{
    config::{Config, ReplyTo},
    pending::Pending,
    presence::Prober,
};
use crate::{
    connection::Connection,
    protocol::{is_short_string, reply_address::reply_queue_name},
    session::{Ended, Generation, Publisher, Sessions},
    transport::{
        AmqpError,
        client::{Replies, ReplyAddress, ReplyChannel, SessionChannels, open_session},
        link::Link,
        publish::{CallPublisher, OneWayPublisher, ReturnedTo},
    },
};
use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// One session: its channels and its reply address.
pub(crate) struct Session {
    pub(crate) id: u64,
    /// The `reply_to` of its calls.
    pub(crate) reply_to: Arc<str>,
    /// Where calls publish; replaced if refused (unless `reply_channel` is
    /// `None`: direct reply-to publishes on the reply consumer's channel).
    requests: Replaceable<CallPublisher>,
    /// The reply consumer's channel, when requests have another.
    reply_channel: Option<ReplyChannel>,
    /// Opened on the first one-way call (see
    /// [`publish`](crate::transport::publish) for why one-way requests need a
    /// channel of their own).
    one_way: OnceCell<Replaceable<OneWayPublisher>>,
    /// Asks the broker whether servers consume a queue (see
    /// [`presence`](super::presence)).
    pub(crate) probe: Prober,
    pub(crate) link: Link,
    confirms: bool,
    returned: ReturnedTo,
    /// The `user_id` its calls carry: its connection's user (see
    /// [`ClientBuilder::send_user_id`](crate::ClientBuilder::send_user_id)).
    pub(crate) user_id: Option<Arc<str>>,
    /// When it was set up.
    opened: std::time::Instant,
}

impl Generation for Arc<Session> {
    fn generation(&self) -> u64 {
        self.id
    }
}

impl Session {
    /// Whether this session replaced a lost one less than `grace` ago: the
    /// broker may have just restarted, and not yet recovered its durable
    /// queues, nor the servers declared theirs again.
    pub(crate) fn just_recovered(&self, grace: std::time::Duration) -> bool {
        self.id > 1 && self.opened.elapsed() < grace
    }

    /// The channel calls publish on now.
    pub(crate) fn requests(&self) -> Arc<CallPublisher> {
        self.requests.current()
    }

    /// Replaces `stale`, the channel for calls, with a new one, unless it
    /// was replaced already; whether calls have a channel other than
    /// `stale` now.
    pub(crate) async fn replace_requests(&self, stale: &Arc<CallPublisher>) -> bool {
        if self.reply_channel.is_none() {
            return false;
        }
        let (link, confirms, returned) = (&self.link, self.confirms, self.returned.clone());
        self.requests
            .replace(stale, || CallPublisher::open(link, confirms, returned))
            .await
    }

    /// The channel for one-way requests, opened now if it is not yet.
    pub(crate) async fn one_way(&self) -> Result<Arc<OneWayPublisher>, AmqpError> {
        let (link, confirms, returned) = (&self.link, self.confirms, self.returned.clone());
        let one_way = self
            .one_way
            .get_or_try_init(|| async move {
                Ok::<_, AmqpError>(Replaceable::new(
                    OneWayPublisher::open(link, confirms, returned).await?,
                ))
            })
            .await?;
        Ok(one_way.current())
    }

    /// Replaces `stale`, the channel for one-way requests, as
    /// [`replace_requests`](Self::replace_requests) does.
    pub(crate) async fn replace_one_way(&self, stale: &Arc<OneWayPublisher>) -> bool {
        let Some(one_way) = self.one_way.get() else {
            return false;
        };
        let (link, confirms, returned) = (&self.link, self.confirms, self.returned.clone());
        one_way
            .replace(stale, || OneWayPublisher::open(link, confirms, returned))
            .await
    }

    async fn close(&self) {
        self.requests.current().close().await;
        if let Some(replies) = &self.reply_channel {
            replies.close().await;
        }
        if let Some(one_way) = self.one_way.get() {
            one_way.current().close().await;
        }
        self.probe.close().await;
    }
}

/// A publishing channel that may be replaced: its users take the current
/// one, and the first to find it bad opens the next.
struct Replaceable<P> {
    current: Mutex<Arc<P>>,
    /// Held while opening one, so that callers who found the same channel
    /// bad open one between them.
    opening: tokio::sync::Mutex<()>,
}

impl<P> Replaceable<P> {
    fn new(first: P) -> Self {
        Self {
            current: Mutex::new(Arc::new(first)),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Arc<P> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces `stale` with one opened by `open`, unless another replaced
    /// it first; whether the current one is another than `stale` now. The
    /// stale channel closes once the last request on it is confirmed.
    async fn replace<F, O>(&self, stale: &Arc<P>, open: O) -> bool
    where
        O: FnOnce() -> F,
        F: Future<Output = Result<P, AmqpError>>,
    {
        let _opening = self.opening.lock().await;
        if !Arc::ptr_eq(&self.current(), stale) {
            return true;
        }
        match open().await {
            Ok(next) => {
                debug!("replaced a publishing channel");
                *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(next);
                true
            }
            Err(error) => {
                debug!(%error, "could not open a publishing channel");
                false
            }
        }
    }
}

/// Sets session number `id` up on `link`, and marks it in `pending` as the
/// one calls register on.
pub(crate) async fn open(
    link: &Link,
    config: &Config,
    pending: &Arc<Pending>,
    id: u64,
) -> Result<(Arc<Session>, Replies), AmqpError> {
    let address = match config.reply_to {
        ReplyTo::DirectReplyTo => ReplyAddress::DirectReplyTo,
        ReplyTo::ExclusiveQueue => ReplyAddress::ExclusiveQueue(reply_queue_name(&config.id, id)),
    };
    let returned: ReturnedTo = {
        let pending = pending.clone();
        Arc::new(move |correlation_id| pending.returned(correlation_id))
    };
    let SessionChannels {
        requests,
        replies,
        reply_to,
        reply_channel,
    } = open_session(link, &address, config.publisher_confirms, returned.clone()).await?;
    pending.start_session(id);
    let session = Arc::new(Session {
        id,
        reply_to,
        requests: Replaceable::new(requests),
        reply_channel,
        one_way: OnceCell::new(),
        probe: Prober::default(),
        link: link.clone(),
        confirms: config.publisher_confirms,
        returned,
        user_id: user_id(link, config),
        opened: std::time::Instant::now(),
    });
    Ok((session, replies))
}

/// The `user_id` of calls published on `link`, if they carry one.
fn user_id(link: &Link, config: &Config) -> Option<Arc<str>> {
    let user = link.user().filter(|_| config.send_user_id)?;
    if !is_short_string(user) {
        warn!(
            "the connection's user name is longer than 255 bytes, more than a request's \
             user_id holds: calls carry no caller identity"
        );
        return None;
    }
    Some(user.clone())
}

/// A client's sessions, for [`session::keep`](crate::session::keep): publishes
/// each one to the client's callers while it is up.
pub(crate) struct ClientSessions {
    pub(crate) connection: Connection,
    pub(crate) config: Arc<Config>,
    pub(crate) pending: Arc<Pending>,
    pub(crate) published: Publisher<Arc<Session>>,
    pub(crate) stop: CancellationToken,
}

impl Sessions for ClientSessions {
    type Session = (Arc<Session>, Replies);

    async fn open(&mut self, link: &Link, id: u64) -> Result<Self::Session, AmqpError> {
        let (session, replies) = open(link, &self.config, &self.pending, id).await?;
        self.published.up(session.clone());
        Ok((session, replies))
    }

    async fn run(&mut self, (session, mut replies): Self::Session) -> Ended {
        let ended = self.receive_replies(&mut replies).await;
        self.pending.end_session(session.id);
        if ended == Ended::Lost {
            self.published.down();
        }
        // The session may have ended alone, its channels still open.
        session.close().await;
        // Dropped only now: lapin cancels a consumer dropped while its
        // channel is open, from a task of its own, and that `basic.cancel`
        // could follow the channel's `channel.close` onto the wire, which
        // the broker answers by closing the whole connection (504, seen on
        // a busy machine); once the channel is closed nothing is sent.
        drop(replies);
        ended
    }

    async fn finish(self) {
        self.published.closed();
    }

    fn what(&self) -> String {
        "the client's reply consumer".to_owned()
    }
}

impl ClientSessions {
    async fn receive_replies(&self, replies: &mut Replies) -> Ended {
        // Raced once against the whole loop rather than per reply: a
        // `select!` per reply would move each delivery once more and poll
        // the token each time.
        let ended = tokio::select! {
            biased;
            () = self.stop.cancelled() => return Ended::Stopped,
            ended = self.hand_out_replies(replies) => ended,
        };
        if self.connection.is_closing() {
            return Ended::Stopped;
        }
        warn!(reason = %ended, url = self.connection.url(), "the client's session ended; calls in flight fail");
        Ended::Lost
    }

    /// Hands each reply to the call waiting for it until the consumer ends;
    /// returns why it ended.
    async fn hand_out_replies(&self, replies: &mut Replies) -> String {
        replies
            .hand_out(|correlation_id, body| self.pending.complete(correlation_id, body))
            .await
    }
}
