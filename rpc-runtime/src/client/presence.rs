//! Whether any server consumes a request queue, as the broker says.
//!
//! A queue that exists but that nobody consumes is the most common "server
//! is down" case: a server's durable queue outlives the server, so requests
//! to it are neither returned (the queue takes them) nor answered. The broker
//! tells how many consumers a queue has in its answer to a passive
//! `queue.declare`; a client asks it:
//!
//! - when a call times out, so that the error says whether any server was
//!   consuming the queue then ("no server is consuming `rpc_queue`"), or
//!   whether the queue existed at all (a request to a missing queue was
//!   dropped), rather than only that the reply did not come;
//! - before publishing, for calls that asked to fail at once when no server
//!   is there (`require_server`).
//!
//! A passive declare of a queue that does not exist closes its channel, so
//! the questions go over a channel of their own, opened when first needed
//! and again after such a close. Answers are kept for a moment
//! ([`FRESH_WITH_SERVERS`], [`FRESH_WITHOUT`]), so that a burst of timeouts
//! or of `require_server` calls asks once rather than once per call.

use crate::transport::{
    link::Link,
    probe::{ProbeChannel, QueueState},
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::time::Instant;
use tracing::debug;

/// How long an answer of one or more consumers is trusted: a server that
/// stops meanwhile is noticed at the next question after that.
const FRESH_WITH_SERVERS: Duration = Duration::from_secs(1);
/// How long an answer of no consumer (or no queue) is trusted: short, so
/// that a server that starts is noticed at once.
const FRESH_WITHOUT: Duration = Duration::from_millis(100);
/// How long a question may take at most, and at least: a timed-out call
/// waits a tenth of its timeout longer at most (within these bounds) before
/// it reports its timeout, and reports it without the count if the broker
/// did not answer by then.
const LONGEST_QUESTION: Duration = Duration::from_secs(2);
const SHORTEST_QUESTION: Duration = Duration::from_millis(20);

/// How long a call with `timeout` may wait for an answer.
pub(crate) fn patience(timeout: Duration) -> Duration {
    (timeout / 10).clamp(SHORTEST_QUESTION, LONGEST_QUESTION)
}

/// What the broker said of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    /// The queue exists with this many consumers.
    Consumers(u32),
    /// The queue does not exist.
    NoQueue,
    /// The queue exists, but the node holding it is down.
    NodeDown,
    /// The broker could not be asked (no connection, or it did not answer
    /// in time).
    Unknown,
}

impl Presence {
    /// The consumer count as reported in errors: none for a missing queue,
    /// which [`Presence::is_missing`] tells apart (a request to it was
    /// dropped, while one to a queue without consumers waits there).
    pub(crate) fn consumers(self) -> Option<u32> {
        match self {
            Presence::Consumers(count) => Some(count),
            Presence::NoQueue | Presence::NodeDown | Presence::Unknown => None,
        }
    }

    /// Whether the broker said that the queue does not exist.
    pub(crate) fn is_missing(self) -> bool {
        self == Presence::NoQueue
    }

    fn fresh_for(self) -> Duration {
        match self {
            Presence::Consumers(count) if count > 0 => FRESH_WITH_SERVERS,
            _ => FRESH_WITHOUT,
        }
    }
}

/// The answers a client has had, by queue.
#[derive(Debug, Default)]
pub(crate) struct Answers(Mutex<HashMap<Arc<str>, (Instant, Presence)>>);

impl Answers {
    fn fresh(&self, queue: &str) -> Option<Presence> {
        let answers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let &(at, presence) = answers.get(queue)?;
        (at.elapsed() < presence.fresh_for()).then_some(presence)
    }

    fn record(&self, queue: &Arc<str>, presence: Presence) {
        let mut answers = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded by the queues a client calls; forget stale answers when
        // there are many, so that a client calling ever new queues does not
        // grow.
        if answers.len() >= 1024 {
            answers.retain(|_, (at, presence)| at.elapsed() < presence.fresh_for());
        }
        if presence != Presence::Unknown {
            answers.insert(queue.clone(), (Instant::now(), presence));
        }
    }
}

/// The channel of one session that questions go over.
#[derive(Default)]
pub(crate) struct Prober {
    channel: tokio::sync::Mutex<ProbeChannel>,
}

impl Prober {
    /// Whether servers consume `queue`, from a fresh answer in `answers` or
    /// else from the broker, over a channel of `link`, waiting at most
    /// `patience` for it.
    pub(crate) async fn ask(
        &self,
        link: &Link,
        answers: &Answers,
        queue: &Arc<str>,
        patience: Duration,
    ) -> Presence {
        if let Some(presence) = answers.fresh(queue) {
            return presence;
        }
        let asked = tokio::time::timeout(patience, async {
            // One question at a time per session: callers that waited find
            // the answer the first one got.
            let mut channel = self.channel.lock().await;
            if let Some(presence) = answers.fresh(queue) {
                return presence;
            }
            let presence = match channel.consumers(link, queue).await {
                Ok(QueueState::Consumers(count)) => Presence::Consumers(count),
                Ok(QueueState::Missing) => Presence::NoQueue,
                Ok(QueueState::NodeDown) => Presence::NodeDown,
                Err(error) => {
                    debug!(%error, queue = &**queue, "could not ask for a queue's consumers");
                    Presence::Unknown
                }
            };
            answers.record(queue, presence);
            presence
        });
        asked.await.unwrap_or(Presence::Unknown)
    }

    /// Closes the channel, if one is open.
    pub(crate) async fn close(&self) {
        self.channel.lock().await.close().await;
    }
}
