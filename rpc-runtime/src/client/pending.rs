//! Reply matching: the table of calls waiting for their reply.
//!
//! Every call registers here *before* its request is published, under a
//! correlation id `<client id>.<sequence number>.<tag>` (its format is the
//! protocol's, [`CorrelationIds`]), and leaves on every path:
//!
//! - its reply arrives (`Pending::complete`);
//! - the broker returns its request undelivered (`Pending::returned`);
//! - the session its request went out on ends (`Pending::end_session`), and
//!   it fails with `ConnectionLost` at once;
//! - its deadline passes (`Pending::expire`, run by the client's
//!   `sweep_deadlines` task), and it fails with `Timeout`;
//! - its future is dropped (`PendingCall`'s `Drop`).
//!
//! The first four leave the outcome in the call's entry and wake the call,
//! which takes the entry out when it reads it: the table is its own reply
//! slot, with no channel allocated per call.
//!
//! Deadlines are kept here rather than in a Tokio timer per call: a heap of
//! `(time, sequence)` under the table's lock, which one task per client
//! sleeps on until its earliest entry. Entries of calls that ended stay in
//! the heap until they come up or the heap is rebuilt from the calls still
//! waiting (when it holds more than twice as many entries), so a call costs
//! one push and no removal. A call published with confirms is first in the
//! heap at its *confirm patience* instead, if that ends sooner: then it is
//! woken once, without an outcome (`Event::Overdue`: its request may need
//! sending again), and goes back in the heap at its deadline. Its patience
//! thus costs no timer of its own either.
//!
//! A reply whose correlation id is not in the table (unknown, from another
//! client, or a second reply to the same call) is dropped and logged at debug.
//! The tag is a keyed hash of the sequence number, with a key only this
//! client knows: a server, which sees one correlation id, cannot forge the
//! ids of the client's other calls (to other services).

use crate::protocol::request::CorrelationIds;
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    fmt,
    future::poll_fn,
    hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};
use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;
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
    /// Its deadline passed.
    TimedOut,
}

/// What wakes a waiting call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Its outcome.
    Outcome(Outcome),
    /// Its confirm patience ran out with no outcome yet (once a call).
    Overdue,
}

/// The table of calls waiting for replies, shared by a client's callers and
/// its reply consumer.
pub(crate) struct Pending {
    /// The format of this client's correlation ids.
    ids: CorrelationIds,
    next: AtomicU64,
    /// The secret key of the correlation ids' tags.
    tags: RandomState,
    table: Mutex<Table>,
    /// Wakes the deadline task when a call's deadline is earlier than the
    /// one it sleeps until.
    earlier_deadline: Notify,
}

struct Table {
    waiting: HashMap<u64, Waiter, BuildHasherDefault<SequenceHasher>>,
    /// The session whose replies the consumer is receiving, if any: calls may
    /// only register on it, so that none registers on a session that already
    /// ended (and would wait for a reply that cannot come).
    live_session: Option<u64>,
    /// Every waiting call's next wake-up (its patience, then its
    /// deadline), and some of calls that ended.
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// What the deadline task sleeps until (`None`: until woken).
    sweep_at: Option<Instant>,
}

impl Table {
    /// Rebuilds the heap from the calls still waiting once the entries of
    /// ended calls outnumber them: amortized, a constant cost per call.
    fn prune_deadlines(&mut self) {
        if self.deadlines.len() <= 2 * self.waiting.len() + 64 {
            return;
        }
        let mut entries = std::mem::take(&mut self.deadlines).into_vec();
        entries.clear();
        entries.extend(
            self.waiting
                .iter()
                .filter(|(_, waiter)| waiter.is_waiting())
                .map(|(sequence, waiter)| Reverse((waiter.wake_at(), *sequence))),
        );
        self.deadlines = BinaryHeap::from(entries);
    }
}

struct Waiter {
    session: u64,
    deadline: Instant,
    /// When its confirm patience runs out, until then.
    overdue_at: Option<Instant>,
    /// The tag of the call's correlation id, kept to check replies against
    /// without hashing again.
    tag: u64,
    state: State,
}

/// Where a call is.
enum State {
    /// No outcome yet. `waker`: the call's, once it has polled; `overdue`:
    /// its patience ran out, and it has not been told.
    Waiting { waker: Option<Waker>, overdue: bool },
    /// Its outcome, which the call has not read yet.
    Done(Outcome),
}

impl Waiter {
    /// When the heap should next wake this call.
    fn wake_at(&self) -> Instant {
        self.overdue_at.unwrap_or(self.deadline)
    }

    /// Ends the call with `outcome`, unless it has one already; the waker
    /// to wake (once the table is unlocked) if it ended now.
    #[must_use]
    fn finish(&mut self, outcome: Outcome) -> Option<Option<Waker>> {
        match std::mem::replace(&mut self.state, State::Done(outcome)) {
            State::Waiting { waker, .. } => Some(waker),
            done => {
                self.state = done;
                None
            }
        }
    }

    fn is_waiting(&self) -> bool {
        matches!(self.state, State::Waiting { .. })
    }
}

/// Hashes the table's keys, sequence numbers the client chose itself: a
/// multiplication spreads consecutive numbers well, at a fraction of the
/// cost of the default SipHash (which guards against keys an attacker
/// chooses; replies can only look keys up, never add them).
#[derive(Default)]
struct SequenceHasher(u64);

impl Hasher for SequenceHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Pending {
    pub(crate) fn new(client_id: &str) -> Arc<Self> {
        Arc::new(Self {
            ids: CorrelationIds::new(client_id),
            next: AtomicU64::new(1),
            tags: RandomState::new(),
            table: Mutex::new(Table {
                waiting: HashMap::default(),
                live_session: None,
                deadlines: BinaryHeap::new(),
                sweep_at: None,
            }),
            earlier_deadline: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // The table stays consistent even if a holder panicked: every
        // operation is a single insert or remove.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a call on `session` until `deadline`, returning its
    /// correlation id and the guard that receives its reply, or `None` if
    /// `session` is no longer live. With a `patience`, the call is woken
    /// once ([`Event::Overdue`]) if that much time passes first.
    pub(crate) fn register(
        self: &Arc<Self>,
        session: u64,
        deadline: Instant,
        patience: Option<Duration>,
    ) -> Option<PendingCall> {
        let sequence = self.next.fetch_add(1, Ordering::Relaxed);
        let tag = self.tags.hash_one(sequence);
        let overdue_at = patience
            .and_then(|patience| Instant::now().checked_add(patience))
            .filter(|at| *at < deadline);
        let earlier = {
            let mut table = self.lock();
            if table.live_session != Some(session) {
                return None;
            }
            let waiter = Waiter {
                session,
                deadline,
                overdue_at,
                tag,
                state: State::Waiting {
                    waker: None,
                    overdue: false,
                },
            };
            let wake_at = waiter.wake_at();
            table.waiting.insert(sequence, waiter);
            table.prune_deadlines();
            table.deadlines.push(Reverse((wake_at, sequence)));
            table.sweep_at.is_none_or(|at| wake_at < at)
        };
        if earlier {
            self.earlier_deadline.notify_one();
        }
        Some(PendingCall {
            pending: Arc::clone(self),
            sequence,
            correlation_id: self.ids.format(sequence, tag),
        })
    }

    /// Fails the calls whose deadline has passed by `now`, and tells those
    /// whose patience has that it ran out; returns the earliest time left,
    /// if any.
    pub(crate) fn expire(&self, now: Instant) -> Option<Instant> {
        let mut woken = Vec::new();
        let next = {
            let mut table = self.lock();
            while let Some(&Reverse((at, sequence))) = table.deadlines.peek() {
                if at > now {
                    break;
                }
                table.deadlines.pop();
                // Unless the call already ended: sequence numbers are never
                // reused, and each call waiting has one entry.
                let Some(waiter) = table.waiting.get_mut(&sequence).filter(|w| w.is_waiting())
                else {
                    continue;
                };
                if waiter.deadline <= now {
                    woken.extend(waiter.finish(Err(Unanswered::TimedOut)).flatten());
                } else if waiter.overdue_at.take().is_some() {
                    if let State::Waiting { waker, overdue } = &mut waiter.state {
                        *overdue = true;
                        woken.extend(waker.take());
                    }
                    let deadline = waiter.deadline;
                    table.deadlines.push(Reverse((deadline, sequence)));
                }
            }
            let next = table
                .deadlines
                .peek()
                .map(|Reverse((deadline, _))| *deadline);
            table.sweep_at = next;
            next
        };
        woken.into_iter().for_each(Waker::wake);
        next
    }

    /// Marks `session` as the one whose replies are being received.
    pub(crate) fn start_session(&self, session: u64) {
        self.lock().live_session = Some(session);
    }

    /// Ends `session`: every call still waiting on it fails at once.
    pub(crate) fn end_session(&self, session: u64) {
        let mut ended = 0usize;
        let mut woken = Vec::new();
        {
            let mut table = self.lock();
            if table.live_session == Some(session) {
                table.live_session = None;
            }
            for waiter in table.waiting.values_mut() {
                if waiter.session == session
                    && let Some(waker) = waiter.finish(Err(Unanswered::SessionEnded))
                {
                    ended += 1;
                    woken.extend(waker);
                }
            }
        }
        if ended > 0 {
            debug!(
                calls = ended,
                "failing the calls in flight on a lost session"
            );
        }
        woken.into_iter().for_each(Waker::wake);
    }

    /// Hands a reply to the call it answers; drops it if no call waits for it.
    pub(crate) fn complete(&self, correlation_id: Option<&str>, body: Vec<u8>) {
        match self.finish(correlation_id, Ok(body)) {
            Some(waker) => waker.into_iter().for_each(Waker::wake),
            None => debug!(
                ?correlation_id,
                "dropping a reply that no call waits for (unknown, late, repeated or forged)"
            ),
        }
    }

    /// Fails the call whose request the broker returned undelivered.
    pub(crate) fn returned(&self, correlation_id: Option<&str>) {
        match self.finish(correlation_id, Err(Unanswered::Returned)) {
            Some(waker) => waker.into_iter().for_each(Waker::wake),
            None => debug!(?correlation_id, "a returned request of no waiting call"),
        }
    }

    /// Ends the call `correlation_id` names with `outcome`, if it is one of
    /// this client's ids, the call waits, and the tag is the call's; the
    /// call's waker (once it has polled) to wake, with the table unlocked.
    fn finish(&self, correlation_id: Option<&str>, outcome: Outcome) -> Option<Option<Waker>> {
        let (sequence, tag) = self.ids.parse(correlation_id?)?;
        let mut table = self.lock();
        match table.waiting.get_mut(&sequence) {
            Some(waiter) if waiter.tag == tag => waiter.finish(outcome),
            _ => None,
        }
    }

    /// How many calls are waiting for a reply.
    pub(crate) fn len(&self) -> usize {
        self.lock()
            .waiting
            .values()
            .filter(|waiter| waiter.is_waiting())
            .count()
    }

    /// Call `sequence`'s outcome, taking its entry out; or, if `overdue`
    /// is wanted, the news that its patience ran out.
    fn poll(&self, sequence: u64, overdue_wanted: bool, cx: &Context<'_>) -> Poll<Event> {
        let mut table = self.lock();
        let Some(waiter) = table.waiting.get_mut(&sequence) else {
            // Read already: nothing more will come.
            return Poll::Ready(Event::Outcome(Err(Unanswered::SessionEnded)));
        };
        match &mut waiter.state {
            State::Waiting { waker, overdue } => {
                if overdue_wanted && std::mem::take(overdue) {
                    return Poll::Ready(Event::Overdue);
                }
                match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            State::Done(_) => match table.waiting.remove(&sequence) {
                Some(Waiter {
                    state: State::Done(outcome),
                    ..
                }) => Poll::Ready(Event::Outcome(outcome)),
                _ => Poll::Ready(Event::Outcome(Err(Unanswered::SessionEnded))),
            },
        }
    }
}

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pending")
            .field("ids", &self.ids)
            .field("waiting", &self.len())
            .finish()
    }
}

/// The task that fails calls whose deadline passed, until `stop`.
pub(crate) async fn sweep_deadlines(pending: Arc<Pending>, stop: CancellationToken) {
    loop {
        // Registered before looking, so that a call registered meanwhile
        // with an earlier deadline is not missed.
        let earlier = pending.earlier_deadline.notified();
        tokio::pin!(earlier);
        earlier.as_mut().enable();
        let next = pending.expire(Instant::now());
        tokio::select! {
            () = stop.cancelled() => return,
            () = &mut earlier => {}
            () = sleep_until(next) => {}
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One call's place in the table; dropping it removes the call.
pub(crate) struct PendingCall {
    pending: Arc<Pending>,
    sequence: u64,
    correlation_id: String,
}

impl PendingCall {
    /// The call's correlation id, until it is taken.
    pub(crate) fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The call's correlation id, for its request (taken: it is needed once).
    pub(crate) fn take_correlation_id(&mut self) -> String {
        std::mem::take(&mut self.correlation_id)
    }

    /// Waits for the reply, or for the news that none will come.
    /// Cancel-safe.
    pub(crate) async fn outcome(&mut self) -> Outcome {
        let sequence = self.sequence;
        loop {
            // The news of its patience is not asked for here, so never comes.
            if let Event::Outcome(outcome) =
                poll_fn(|cx| self.pending.poll(sequence, false, cx)).await
            {
                return outcome;
            }
        }
    }

    /// Waits for the reply, the news that none will come, or the news that
    /// the call's patience ran out (see the module doc). Cancel-safe.
    pub(crate) async fn next(&mut self) -> Event {
        let sequence = self.sequence;
        poll_fn(|cx| self.pending.poll(sequence, true, cx)).await
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
    use futures_util::FutureExt;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    #[tokio::test]
    async fn replies_reach_their_own_call_only() {
        let pending = Pending::new("c");
        pending.start_session(1);
        let mut first = pending.register(1, later(), None).expect("live");
        let mut second = pending.register(1, later(), None).expect("live");
        assert_ne!(first.correlation_id(), second.correlation_id());

        pending.complete(Some(second.correlation_id()), b"two".to_vec());
        pending.complete(Some(first.correlation_id()), b"one".to_vec());
        assert_eq!(first.outcome().await, Ok(b"one".to_vec()));
        assert_eq!(second.outcome().await, Ok(b"two".to_vec()));

        // Repeated, unknown, forged and foreign ids are dropped without effect.
        let mut third = pending.register(1, later(), None).expect("live");
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
        let mut old = pending.register(1, later(), None).expect("live");
        pending.end_session(1);
        assert_eq!(old.outcome().await, Err(Unanswered::SessionEnded));
        assert!(pending.register(1, later(), None).is_none());

        pending.start_session(2);
        let call = pending.register(2, later(), None).expect("live");
        assert_eq!(pending.len(), 1);
        drop(call);
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test]
    async fn calls_past_their_deadline_time_out_and_no_others() {
        let pending = Pending::new("c");
        pending.start_session(1);
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut first = pending.register(1, at(10), None).expect("live");
        let mut second = pending.register(1, at(20), None).expect("live");
        let mut third = pending.register(1, at(30), None).expect("live");
        pending.complete(Some(second.correlation_id()), b"done".to_vec());

        assert_eq!(pending.expire(at(5)), Some(at(10)), "nothing due yet");
        assert_eq!(pending.len(), 2);
        // The answered second call is passed over: the third is next.
        assert_eq!(pending.expire(at(25)), Some(at(30)));
        assert_eq!(first.outcome().await, Err(Unanswered::TimedOut));
        assert_eq!(second.outcome().await, Ok(b"done".to_vec()));
        assert_eq!(pending.len(), 1);
        assert_eq!(pending.expire(at(30)), None);
        assert_eq!(third.outcome().await, Err(Unanswered::TimedOut));
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test]
    async fn a_call_is_told_once_that_its_patience_ran_out_then_times_out() {
        let pending = Pending::new("c");
        pending.start_session(1);
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let patience = Some(Duration::from_millis(10));
        let mut slow = pending.register(1, at(3_600_000), patience).expect("live");
        let mut answered = pending.register(1, at(3_600_000), patience).expect("live");
        // A patience that would end after the deadline is not kept.
        let mut brief = pending.register(1, at(5), patience).expect("live");
        pending.complete(Some(answered.correlation_id()), b"done".to_vec());

        let overdue = Instant::now() + Duration::from_millis(10);
        assert!(pending.expire(at(5)).is_some_and(|next| next <= overdue));
        assert_eq!(brief.outcome().await, Err(Unanswered::TimedOut));
        pending.expire(overdue + Duration::from_millis(1));
        // Told once; a call that was answered is not told.
        assert_eq!(slow.next().await, Event::Overdue);
        assert_eq!(answered.next().await, Event::Outcome(Ok(b"done".to_vec())));
        // The call waits on, now until its deadline.
        assert!(slow.next().now_or_never().is_none());
        assert_eq!(pending.len(), 1);
        assert_eq!(
            pending.expire(overdue + Duration::from_millis(2)),
            Some(at(3_600_000))
        );
        pending.expire(at(3_600_000));
        assert_eq!(slow.next().await, Event::Outcome(Err(Unanswered::TimedOut)));
        assert_eq!(pending.len(), 0);
    }

    #[tokio::test]
    async fn the_deadline_heap_stays_proportional_to_the_waiting_calls() {
        let pending = Pending::new("c");
        pending.start_session(1);
        let kept: Vec<_> = (0..10)
            .map(|_| pending.register(1, later(), None).expect("live"))
            .collect();
        for _ in 0..100_000 {
            drop(pending.register(1, later(), None).expect("live"));
        }
        let heap = pending.lock().deadlines.len();
        assert!(
            heap <= 2 * kept.len() + 65,
            "{heap} entries for {} calls",
            kept.len()
        );
    }

    #[tokio::test]
    async fn the_sweeper_wakes_for_an_earlier_deadline() {
        let pending = Pending::new("c");
        pending.start_session(1);
        let stop = CancellationToken::new();
        let sweeper = tokio::spawn(sweep_deadlines(pending.clone(), stop.clone()));
        let late = pending.register(1, later(), None).expect("live");
        tokio::task::yield_now().await;
        // Registered after the sweeper went to sleep until the later one.
        let mut soon = pending
            .register(1, Instant::now() + Duration::from_millis(50), None)
            .expect("live");
        assert_eq!(soon.outcome().await, Err(Unanswered::TimedOut));
        assert_eq!(pending.len(), 1, "the later call still waits");
        drop(late);
        stop.cancel();
        sweeper.await.expect("sweeper");
    }
}
