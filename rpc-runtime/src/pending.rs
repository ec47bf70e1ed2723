//! Reply matching: the table of calls waiting for their reply.
//!
//! Every call registers here *before* its request is published, under a
//! correlation id `<client id>.<sequence number>.<tag>`, and leaves on every
//! path:
//!
//! - its reply arrives ([`Pending::complete`]);
//! - the broker returns its request undelivered ([`Pending::returned`]);
//! - the session its request went out on ends ([`Pending::end_session`]), and
//!   it fails with `ConnectionLost` at once;
//! - it times out, or its future is dropped ([`PendingCall`]'s `Drop`).
//!
//! A reply whose correlation id is not in the table (unknown, from another
//! client, or a second reply to the same call) is dropped and logged at debug.
//! The tag is a keyed hash of the sequence number, with a key only this
//! client knows: a server, which sees one correlation id, cannot forge the
//! ids of the client's other calls (to other services).

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasher, RandomState},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::oneshot;
use tracing::debug;

/// What a waiting call receives: the reply body, or why none will come.
pub(crate) type Outcome = Result<Vec<u8>, Unanswered>;

/// Why a call will get no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// The session its request was published on ended.
    SessionEnded,
    /// The broker returned its request: no queue took it.
    Returned,
}

/// The table of calls waiting for replies, shared by a client's callers and
/// its reply consumer.
pub(crate) struct Pending {
    /// `<client id>.`, the prefix of every correlation id of this client.
    prefix: String,
    next: AtomicU64,
    /// The secret key of the correlation ids' tags.
    tags: RandomState,
    table: Mutex<Table>,
}

struct Table {
    waiting: HashMap<u64, Waiter>,
    /// The session whose replies the consumer is receiving, if any: calls may
    /// only register on it, so that none registers on a session that already
    /// ended (and would wait for a reply that cannot come).
    live_session: Option<u64>,
}

struct Waiter {
    session: u64,
    reply: oneshot::Sender<Outcome>,
}

impl Pending {
    pub(crate) fn new(client_id: &str) -> Arc<Self> {
        Arc::new(Self {
            prefix: format!("{client_id}."),
            next: AtomicU64::new(1),
            tags: RandomState::new(),
            table: Mutex::new(Table {
                waiting: HashMap::new(),
                live_session: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent even if a holder panicked: every
        // operation is a single insert or remove.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a call on `session`, returning its correlation id and the
    /// guard that receives its reply, or `None` if `session` is no longer live.
    pub(crate) fn register(self: &Arc<Self>, session: u64) -> Option<PendingCall> {
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let (reply, outcome) = oneshot::channel();
        {
            let mut table = self.lock();
            if table.live_session != Some(session) {
                return None;
            }
            table.waiting.insert(sequence, Waiter { session, reply });
        }
        Some(PendingCall {
            pending: Arc::clone(self),
            sequence,
            correlation_id: format!("{}{sequence:x}.{:x}", self.prefix, self.tag(sequence)),
            outcome,
        })
    }

    /// Marks `session` as the one whose replies are being received.
    pub(crate) fn start_session(&self, session: u64) {
        self.lock().live_session = Some(session);
    }

    /// Ends `session`: every call still waiting on it fails at once.
    pub(crate) fn end_session(&self, session: u64) {
        let ended: Vec<Waiter> = {
            let mut table = self.lock();
            if table.live_session == Some(session) {
                table.live_session = None;
            }
            let sequences: Vec<u64> = table
                .waiting
                .iter()
                .filter(|(_, waiter)| waiter.session == session)
                .map(|(sequence, _)| *sequence)
                .collect();
            sequences
                .into_iter()
                .filter_map(|sequence| table.waiting.remove(&sequence))
                .collect()
        };
        if !ended.is_empty() {
            debug!(
                calls = ended.len(),
                "failing the calls in flight on a lost session"
            );
        }
        for waiter in ended {
            // The caller may have gone already; nothing to tell it then.
            let _ = waiter.reply.send(Err(Unanswered::SessionEnded));
        }
    }

    /// Fails the call whose request the broker returned undelivered.
    pub(crate) fn returned(&self, correlation_id: Option<&str>) {
        let waiter = correlation_id
            .and_then(|id| self.sequence_of(id))
            .and_then(|sequence| self.lock().waiting.remove(&sequence));
        match waiter {
            Some(waiter) => {
                let _ = waiter.reply.send(Err(Unanswered::Returned));
            }
            None => debug!(?correlation_id, "a returned request of no waiting call"),
        }
    }

    /// Hands a reply to the call it answers; drops it if no call waits for it.
    pub(crate) fn complete(&self, correlation_id: Option<&str>, body: Vec<u8>) {
        let Some(sequence) = correlation_id.and_then(|id| self.sequence_of(id)) else {
            debug!(
                ?correlation_id,
                "dropping a reply with an unknown correlation id"
            );
            return;
        };
        let waiter = self.lock().waiting.remove(&sequence);
        match waiter {
            Some(waiter) => {
                let _ = waiter.reply.send(Ok(body));
            }
            None => debug!(
                ?correlation_id,
                "dropping a reply for a call that is no longer waiting (late or repeated)"
            ),
        }
    }

    fn tag(&self, sequence: u64) -> u64 {
        self.tags.hash_one(sequence)
    }

    /// The sequence number of one of this client's correlation ids.
    fn sequence_of(&self, correlation_id: &str) -> Option<u64> {
        let (sequence, tag) = correlation_id
            .strip_prefix(self.prefix.as_str())?
            .split_once('.')?;
        let sequence = u64::from_str_radix(sequence, 16).ok()?;
        let tag = u64::from_str_radix(tag, 16).ok()?;
        (tag == self.tag(sequence)).then_some(sequence)
    }

    /// How many calls are waiting for a reply.
    pub(crate) fn len(&self) -> usize {
        self.lock().waiting.len()
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("prefix", &self.prefix)
            .field("waiting", &self.len())
            .finish()
    }
}

/// One call's place in the table; dropping it removes the call.
pub(crate) struct PendingCall {
    pending: Arc<Pending>,
    sequence: u64,
    correlation_id: String,
    outcome: oneshot::Receiver<Outcome>,
}

impl PendingCall {
    pub(crate) fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// Waits for the reply, or for the news that none will come.
    /// Cancel-safe.
    pub(crate) async fn outcome(&mut self) -> Outcome {
        // The sender is only dropped with its table entry, which is removed
        // either after sending or by `Drop` below; a closed channel therefore
        // means the session ended.
        (&mut self.outcome)
            .await
            .unwrap_or(Err(Unanswered::SessionEnded))
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.pending.lock().waiting.remove(&self.sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replies_reach_their_own_call_only() {
        let pending = Pending::new("c");
        pending.start_session(1);
        let mut first = pending.register(1).expect("live");
        let mut second = pending.register(1).expect("live");
        assert_ne!(first.correlation_id(), second.correlation_id());

        pending.complete(Some(second.correlation_id()), b"two".to_vec());
        pending.complete(Some(first.correlation_id()), b"one".to_vec());
        assert_eq!(first.outcome().await, Ok(b"one".to_vec()));
        assert_eq!(second.outcome().await, Ok(b"two".to_vec()));

        // Repeated, unknown, forged and foreign ids are dropped without effect.
        let mut third = pending.register(1).expect("live");
        pending.complete(Some(first.correlation_id()), b"again".to_vec());
        pending.complete(Some("c.zz"), Vec::new());
        pending.complete(Some("c.3.0"), Vec::new());
        pending.complete(Some("other.3.1"), Vec::new());
        pending.complete(None, Vec::new());
        assert_eq!(
            pending.len(),
            1,
            "only the real id of the third call matches it"
        );
        pending.returned(Some(third.correlation_id()));
        assert_eq!(third.outcome().await, Err(Unanswered::Returned));
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test]
    async fn ending_a_session_fails_its_calls_and_refuses_new_ones() {
        let pending = Pending::new("c");
        pending.start_session(1);
        let mut old = pending.register(1).expect("live");
        pending.end_session(1);
        assert_eq!(old.outcome().await, Err(Unanswered::SessionEnded));
        assert!(pending.register(1).is_none());

        pending.start_session(2);
        let call = pending.register(2).expect("live");
        assert_eq!(pending.len(), 1);
        drop(call);
        assert_eq!(pending.len(), 0);
    }
}
