//! Sessions, and keeping one up: reconnection for clients and servers alike.
//!
//! A *session* is what a client or a server sets up on one AMQP connection
//! to do its work: for a client, a channel for calls with its reply
//! consumer; for a server, a channel consuming the request queue. A session
//! ends when its channel or its connection is lost (or when it is stopped),
//! and [`keep`] then sets the next one up:
//!
//! - on the same connection if it is still open (only the channel was lost:
//!   say the broker closed it), after a delay that grows with each failed
//!   set-up ([`SESSION_RETRY_MIN`] to [`SESSION_RETRY_MAX`]);
//! - otherwise on the next connection the
//!   [`Connection`](crate::Connection)'s supervisor makes, as soon as there
//!   is one.
//!
//! What is current, and whether it is up, is told by a [`Watch`]: one for
//! the connection's links (`connection.rs`), one for a client's sessions
//! (`client/session.rs`). Each value has a *generation*, so that whoever
//! found one broken can wait for a newer one.

use crate::{
    backoff,
    transport::{AmqpError, link::Link},
};
use std::{future::Future, time::Duration};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// The first and longest delay between attempts at setting up a session on
/// a connection that is up (the broker keeps refusing the channel).
pub(crate) const SESSION_RETRY_MIN: Duration = Duration::from_millis(100);
pub(crate) const SESSION_RETRY_MAX: Duration = Duration::from_secs(5);

/// Something replaced over time, each one newer than the last.
pub(crate) trait Generation: Clone {
    /// 1 for the first, and one more for each that replaces it.
    fn generation(&self) -> u64;
}

impl Generation for Link {
    fn generation(&self) -> u64 {
        Link::generation(self)
    }
}

/// The current value, as its owner last published it.
#[derive(Clone)]
enum Slot<T> {
    Up(T),
    /// Being replaced.
    Down,
    /// For good.
    Closed,
}

/// Publishes the current value: its owner's half of a [`Watch`].
pub(crate) struct Publisher<T>(watch::Sender<Slot<T>>);

/// Reads the current value, or waits for one.
#[derive(Clone)]
pub(crate) struct Watch<T>(watch::Receiver<Slot<T>>);

/// A watch whose first value is `first`.
pub(crate) fn watch<T: Generation>(first: T) -> (Publisher<T>, Watch<T>) {
    let (publisher, watch) = watch::channel(Slot::Up(first));
    (Publisher(publisher), Watch(watch))
}

impl<T: Generation> Publisher<T> {
    pub(crate) fn up(&self, value: T) {
        self.0.send_replace(Slot::Up(value));
    }

    pub(crate) fn down(&self) {
        self.0.send_replace(Slot::Down);
    }

    pub(crate) fn closed(&self) {
        self.0.send_replace(Slot::Closed);
    }
}

impl<T: Generation> Watch<T> {
    /// The current value, if it is up and newer than `generation`.
    pub(crate) fn current_newer_than(&self, generation: u64) -> Option<T> {
        match &*self.0.borrow() {
            Slot::Up(value) if value.generation() > generation => Some(value.clone()),
            _ => None,
        }
    }

    /// The first value newer than `generation`: the current one if it is,
    /// or the next. `None` once closed.
    pub(crate) async fn newer_than(&self, generation: u64) -> Option<T> {
        let mut watch = self.0.clone();
        let found = watch
            .wait_for(|slot| match slot {
                Slot::Up(value) => value.generation() > generation,
                Slot::Closed => true,
                Slot::Down => false,
            })
            .await
            .ok()?;
        match &*found {
            Slot::Up(value) => Some(value.clone()),
            _ => None,
        }
    }

    /// Whether a value is up right now, and `is_up` says so of it.
    pub(crate) fn is_up_and(&self, is_up: impl FnOnce(&T) -> bool) -> bool {
        matches!(&*self.0.borrow(), Slot::Up(value) if is_up(value))
    }

    /// Whether it is closed for good.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(&*self.0.borrow(), Slot::Closed)
    }

    /// Waits until closed for good.
    pub(crate) async fn closed(&self) {
        let mut watch = self.0.clone();
        // An error means the publisher is gone, which is closed too.
        let _ = watch.wait_for(|slot| matches!(slot, Slot::Closed)).await;
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Its channel or connection was lost: set the next one up.
    Lost,
    /// Its owner stopped (or the connection was closed): no next one.
    Stopped,
}

/// What a client or a server does with its sessions; [`keep`] drives it.
pub(crate) trait Sessions: Send {
    /// One session.
    type Session: Send;

    /// Sets session number `id` up on `link`.
    fn open(
        &mut self,
        link: &Link,
        id: u64,
    ) -> impl Future<Output = Result<Self::Session, AmqpError>> + Send;

    /// Runs `session` until it ends.
    fn run(&mut self, session: Self::Session) -> impl Future<Output = Ended> + Send;

    /// After the last session: no more will be set up.
    fn finish(self) -> impl Future<Output = ()> + Send;

    /// What the sessions are of, for logs ("the client's reply consumer").
    fn what(&self) -> String;
}

/// Keeps one session of `sessions` up on the connection whose links are
/// `links`, from the first one (number `id`, on `link`) until a session ends
/// with [`Ended::Stopped`] or `stop` fires.
pub(crate) async fn keep<S: Sessions>(
    mut sessions: S,
    links: Watch<Link>,
    mut link: Link,
    first: (u64, S::Session),
    stop: CancellationToken,
) {
    let (mut id, first) = first;
    let mut session = Some(first);
    let mut failures = 0u32;
    loop {
        if let Some(current) = session.take() {
            failures = 0;
            if sessions.run(current).await == Ended::Stopped {
                break;
            }
        }
        link = match link_for_next_session(&links, &link, failures, &stop).await {
            Some(next) => next,
            None => break,
        };
        id += 1;
        match sessions.open(&link, id).await {
            Ok(next) => session = Some(next),
            Err(error) => {
                failures += 1;
                warn!(%error, "could not set up {}; retrying", sessions.what());
            }
        }
    }
    sessions.finish().await;
}

/// The link to set the next session up on, after the last one on `current`
/// ended: `current` itself if it is still open (only the channel was lost;
/// after `failures` failed set-ups in a row, wait a little longer each time),
/// or else the next link the connection makes. `None` once the connection is
/// closed or `stop` fires.
async fn link_for_next_session(
    links: &Watch<Link>,
    current: &Link,
    failures: u32,
    stop: &CancellationToken,
) -> Option<Link> {
    if current.is_open() {
        if failures > 0 {
            let delay = backoff::delay(SESSION_RETRY_MIN, SESSION_RETRY_MAX, failures - 1);
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
        }
        return Some(current.clone());
    }
    tokio::select! {
        () = stop.cancelled() => None,
        next = links.newer_than(current.generation()) => next,
    }
}
