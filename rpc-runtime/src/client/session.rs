//! A client's session: one channel for calls with its reply consumer (and,
//! once needed, one for one-way requests), and the task that hands each
//! reply to the call waiting for it.
//!
//! When the session ends (its channel or connection lost) the calls in
//! flight on it fail at once (`Pending::end_session`), and the next session
//! is set up by [`session::keep`](crate::session::keep).

use super::{
    config::{Config, ReplyTo},
    pending::Pending,
    presence::Prober,
};
use crate::{
    connection::Connection,
    protocol::reply_address::reply_queue_name,
    session::{Ended, Generation, Publisher, Sessions},
    transport::{
        AmqpError,
        client::{Replies, ReplyAddress, open_session},
        link::Link,
        publish::{CallPublisher, OneWayPublisher, ReturnedTo},
    },
};
use std::sync::Arc;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// One session: its channels and its reply address.
pub(crate) struct Session {
    pub(crate) id: u64,
    /// The `reply_to` of its calls.
    pub(crate) reply_to: Arc<str>,
    pub(crate) requests: CallPublisher,
    /// Opened on the first one-way call (see
    /// [`publish`](crate::transport::publish) for why one-way requests need a
    /// channel of their own).
    one_way: OnceCell<OneWayPublisher>,
    /// Asks the broker whether servers consume a queue (see
    /// [`presence`](super::presence)).
    pub(crate) probe: Prober,
    pub(crate) link: Link,
    confirms: bool,
    returned: ReturnedTo,
}

impl Generation for Arc<Session> {
    fn generation(&self) -> u64 {
        self.id
    }
}

impl Session {
    /// The channel for one-way requests, opened now if it is not yet.
    pub(crate) async fn one_way(&self) -> Result<&OneWayPublisher, AmqpError> {
        self.one_way
            .get_or_try_init(|| {
                OneWayPublisher::open(&self.link, self.confirms, self.returned.clone())
            })
            .await
    }

    async fn close(&self) {
        self.requests.close().await;
        if let Some(one_way) = self.one_way.get() {
            one_way.close().await;
        }
        self.probe.close().await;
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
    let (requests, replies, reply_to) =
        open_session(link, &address, config.publisher_confirms, returned.clone()).await?;
    pending.start_session(id);
    let session = Arc::new(Session {
        id,
        reply_to,
        requests,
        one_way: OnceCell::new(),
        probe: Prober::default(),
        link: link.clone(),
        confirms: config.publisher_confirms,
        returned,
    });
    Ok((session, replies))
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

    async fn run(&mut self, (session, replies): Self::Session) -> Ended {
        let ended = self.receive_replies(replies).await;
        self.pending.end_session(session.id);
        if ended == Ended::Lost {
            self.published.down();
        }
        // The session may have ended alone, its channels still open.
        session.close().await;
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
    async fn receive_replies(&self, replies: Replies) -> Ended {
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
    async fn hand_out_replies(&self, mut replies: Replies) -> String {
        replies
            .hand_out(|correlation_id, body| self.pending.complete(correlation_id, body))
            .await
    }
}
