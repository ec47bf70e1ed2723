//! The call engine: runs each call from its checks to its outcome.
//!
//! A call is checked (queue name, size, timeout), registered in the table
//! of pending calls ([`pending`](super::pending)) under its deadline, and
//! its request published on the client's current session; then it waits
//! for the broker's verdict on the request and for the reply. Whenever the
//! request could not be sent (the session ended first), it moves on to the
//! next session; a request the broker returns while its queue exists, or
//! refuses, is sent again after a delay that grows each time (a refused one
//! on a new channel: see [`session`](super::session)); all within its
//! timeout. A call that times out says whether
//! any server was consuming its queue ([`presence`](super::presence)).

use super::{
    config::Config,
    intercept::OutgoingCall,
    observe::CallSite,
    pending::{Event, Outcome, Pending, Unanswered},
    presence::{self, Answers, Presence},
    session::Session,
};
use crate::{
    backoff,
    clock::{self, instant_after},
    error::RpcError,
    metadata::Metadata,
    protocol::{
        headers::{self, RequestHeaders},
        is_queue_name, is_short_string,
        request::RequestProperties,
    },
    session::Watch,
    trace::{self, Origin, SpanId, TraceId},
    transport::publish::{CallPublisher, Request, Verdict},
};
use futures_util::FutureExt;
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio::time::Instant;
use tokio_util::sync::DropGuard;
use tracing::{debug, field};

/// What the engine needs to know of one call.
pub(crate) struct CallSpec {
    pub(crate) queue: Arc<str>,
    pub(crate) site: &'static CallSite,
    pub(crate) body: Arc<Vec<u8>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) require_server: Option<bool>,
    /// The call's own headers (the client's and its interceptors' are added
    /// when it is sent).
    pub(crate) metadata: Metadata,
    /// What its trace continues, when it carries trace context.
    pub(crate) origin: Origin,
}

/// A client's engine, shared by its clones and its calls in flight.
pub(crate) struct Engine {
    pub(crate) config: Arc<Config>,
    pub(crate) pending: Arc<Pending>,
    /// What the broker said of the request queues' consumers.
    pub(crate) answers: Answers,
    pub(crate) sessions: Watch<Arc<Session>>,
    /// Stops the session task when the last clone of the client is dropped.
    pub(crate) _stop: DropGuard,
}

impl Engine {
    /// The current session, if one is up and newer than `newer_than`.
    fn current_session(&self, newer_than: u64) -> Option<Arc<Session>> {
        self.sessions.current_newer_than(newer_than)
    }

    /// The current session, waiting for one if there is none; `newer_than`
    /// skips a session already found broken. `None` once the client is
    /// closed.
    async fn session(&self, newer_than: u64) -> Option<Arc<Session>> {
        self.sessions.newer_than(newer_than).await
    }

    /// The deadline of a call that may be sent, or why it may not.
    fn deadline_for(&self, spec: &CallSpec) -> Result<Deadline, RpcError> {
        if !is_queue_name(&spec.queue) {
            return Err(RpcError::InvalidQueueName {
                queue: spec.queue.as_ref().to_owned(),
            });
        }
        if !is_short_string(spec.site.method) {
            return Err(RpcError::InvalidMethodName {
                method: spec.site.method.to_owned(),
            });
        }
        let limit = self.config.max_request_size;
        if spec.body.len() > limit {
            return Err(RpcError::RequestTooLarge {
                method: spec.site.method,
                size: spec.body.len(),
                limit,
            });
        }
        let timeout = spec.timeout.unwrap_or(self.config.timeout);
        if timeout.is_zero() {
            return Err(RpcError::Timeout {
                method: spec.site.method,
                timeout,
                queue: spec.queue.as_ref().to_owned(),
                consumers: None,
                queue_missing: false,
            });
        }
        Ok(Deadline {
            at: instant_after(timeout),
            wall: SystemTime::now()
                .checked_add(timeout.min(clock::FOREVER))
                .unwrap_or(SystemTime::UNIX_EPOCH),
            timeout,
        })
    }

    /// The headers of a call's request: its metadata with the client's and
    /// its interceptors', its deadline, and its trace context (its span's
    /// ids, recorded on the span).
    fn headers(
        &self,
        spec: &mut CallSpec,
        deadline: Deadline,
        span: &tracing::Span,
    ) -> Result<RequestHeaders, RpcError> {
        let mut metadata = std::mem::take(&mut spec.metadata);
        metadata.fill_from(&self.config.metadata);
        for interceptor in &self.config.interceptors {
            let mut call = OutgoingCall {
                service: spec.site.service,
                method: spec.site.method,
                queue: &spec.queue,
                metadata: &mut metadata,
            };
            interceptor(&mut call).map_err(|error| RpcError::Intercepted {
                method: spec.site.method,
                message: error.to_string(),
            })?;
        }
        let mut headers = RequestHeaders {
            deadline: Some(headers::deadline_millis(deadline.wall)),
            metadata,
            ..RequestHeaders::default()
        };
        if self.config.trace_context {
            let ids = trace::outgoing(span, std::mem::take(&mut spec.origin));
            if !span.is_disabled() {
                span.record("trace_id", field::display(TraceId(ids.trace_id)));
                span.record("span_id", field::display(SpanId(ids.span_id)));
            }
            headers.traceparent = Some(ids.traceparent());
            headers.tracestate = ids.tracestate;
        }
        Ok(headers)
    }

    /// Whether servers consume `queue`, as the broker says now (or said a
    /// moment ago), asked over `session`'s connection by a call with
    /// `timeout`.
    async fn presence(&self, session: &Session, queue: &Arc<str>, timeout: Duration) -> Presence {
        let patience = presence::patience(timeout);
        session
            .probe
            .ask(&session.link, &self.answers, queue, patience)
            .await
    }

    /// The error of a call to `queue` whose deadline passed: a timeout that
    /// says whether any server was consuming the queue then, or whether the
    /// queue existed at all (a request to a missing queue was dropped:
    /// deleted with its queue, or published without confirms, so without
    /// `mandatory`, and never queued).
    async fn timed_out(
        &self,
        queue: &Arc<str>,
        method: &'static str,
        deadline: Deadline,
    ) -> RpcError {
        let presence = match self.current_session(0) {
            Some(session) => self.presence(&session, queue, deadline.timeout).await,
            None => Presence::Unknown,
        };
        RpcError::Timeout {
            method,
            timeout: deadline.timeout,
            queue: queue.as_ref().to_owned(),
            consumers: presence.consumers(),
            queue_missing: presence.is_missing(),
        }
    }

    /// What to do after the broker returned a request to `queue`: a queue
    /// that does not exist is no service (the usual case); but a queue that
    /// exists can refuse requests for a moment, while the broker recovers it
    /// after a crash (seen here: thousands of returns in the seconds after a
    /// restart), and a returned request was delivered nowhere, so it is sent
    /// again, after a delay that grows with each return, until the deadline.
    /// So it is too when the queue seems not to exist in the first
    /// [`RECOVERY_GRACE`] of a session that replaced a lost one: after a
    /// broker's crash, it accepts connections before it has recovered every
    /// durable queue (seen with the machine busy), and a server declares its
    /// queue again only once it has reconnected.
    async fn after_return(
        &self,
        session: &Session,
        queue: &Arc<str>,
        deadline: Deadline,
        returns: u32,
    ) -> AfterReturn {
        match self.presence(session, queue, deadline.timeout).await {
            Presence::Consumers(_) => {}
            Presence::NodeDown => return AfterReturn::NodeDown,
            Presence::NoQueue | Presence::Unknown if session.just_recovered(RECOVERY_GRACE) => {}
            Presence::NoQueue | Presence::Unknown => return AfterReturn::NoQueue,
        }
        let delay = backoff::delay(RESEND_MIN, RESEND_MAX, returns - 1);
        let again = Instant::now() + delay;
        if again >= deadline.at {
            tokio::time::sleep_until(deadline.at).await;
            return AfterReturn::TimedOut;
        }
        debug!(
            queue = &**queue,
            ?delay,
            "the broker returned a request to a queue that exists; sending it again"
        );
        tokio::time::sleep_until(again).await;
        AfterReturn::SendAgain
    }

    /// After the `refusals`th refusal of a request (a negative publisher
    /// confirm): waits before it is sent again, the delay growing with each
    /// refusal, and says whether to send it; not if it would be sent past
    /// the deadline.
    async fn after_refusal(&self, deadline: Deadline, refusals: u32) -> bool {
        let delay = backoff::delay(RESEND_MIN, RESEND_MAX, refusals - 1);
        let again = Instant::now() + delay;
        if again >= deadline.at {
            return false;
        }
        debug!(?delay, "the broker refused a request; sending it again");
        tokio::time::sleep_until(again).await;
        true
    }

    /// For calls that require a server: fails unless one consumes `queue`.
    /// Nothing is sent yet: a queue the broker says is missing is
    /// `NoSuchService`, whose message ("no queue of that name exists, and
    /// nothing was delivered") is as true of this as of a request the
    /// broker returned.
    async fn check_server(
        &self,
        session: &Session,
        queue: &Arc<str>,
        deadline: Deadline,
    ) -> Result<(), RpcError> {
        match self.presence(session, queue, deadline.timeout).await {
            Presence::Consumers(0) => Err(RpcError::NoServer {
                queue: queue.as_ref().to_owned(),
            }),
            Presence::NoQueue => Err(RpcError::NoSuchService {
                queue: queue.as_ref().to_owned(),
            }),
            Presence::NodeDown => Err(RpcError::QueueUnavailable {
                queue: queue.as_ref().to_owned(),
            }),
            // Unknown: the call goes ahead, and its error says what happened.
            Presence::Consumers(_) | Presence::Unknown => Ok(()),
        }
    }

    /// The error of a call to `method` whose request was out on `session`
    /// when the session ended, or its channel failed: [`RpcError::Closed`]
    /// if the application closed the connection, [`RpcError::ConnectionLost`]
    /// otherwise.
    ///
    /// The client's session task tells them apart, right after it failed the
    /// session's calls: it withdraws a lost session at once (and sets the
    /// next one up), while on a connection the application closed it closes
    /// the session's channels and then the client's sessions for good. Only
    /// a publishing channel that failed alone leaves the session up on an
    /// open connection. Until one of these is seen (it follows at once, or as
    /// soon as the session's channels are closed), the state is looked at
    /// again each [`SETTLING`]; at the deadline, the connection counts as
    /// lost.
    async fn session_ended(
        &self,
        session: &Session,
        method: &'static str,
        deadline: Deadline,
    ) -> RpcError {
        let closed = tokio::time::timeout_at(deadline.at, async {
            loop {
                if self.sessions.is_closed() {
                    return true;
                }
                if session.link.is_open()
                    || !self.sessions.is_up_and(|current| current.id == session.id)
                {
                    // Closed for good, it is no longer up either: read
                    // again, as that may have come between the two reads.
                    return self.sessions.is_closed();
                }
                tokio::select! {
                    () = self.sessions.closed() => return true,
                    () = tokio::time::sleep(SETTLING) => {}
                }
            }
        });
        if closed.await.unwrap_or(false) {
            RpcError::Closed
        } else {
            RpcError::ConnectionLost { method }
        }
    }

    /// The session to send a request on after session `broken` (0: none
    /// yet) could not send it, waiting for one until the deadline.
    async fn next_session(
        &self,
        broken: u64,
        deadline: Deadline,
        method: &'static str,
    ) -> Result<Arc<Session>, Failed> {
        let session = match self.current_session(broken) {
            Some(session) => session,
            // Waiting for a session, the rare case, takes a timer; calls
            // otherwise keep their deadline in the table of pending calls.
            None => match tokio::time::timeout_at(deadline.at, self.session(broken)).await {
                Ok(Some(session)) => session,
                Ok(None) => return Err(Failed::Rpc(RpcError::Closed)),
                Err(_) => return Err(Failed::Rpc(RpcError::NotConnected { method })),
            },
        };
        if broken != 0 && Instant::now() >= deadline.at {
            return Err(Failed::TimedOut);
        }
        Ok(session)
    }

    /// Runs one call: publishes its request and waits for the reply body,
    /// moving on to the next session whenever the request could not be
    /// sent, all within the call's timeout.
    ///
    /// One future from the call to the publication, without layers of
    /// futures in between: each layer would move its state once more per
    /// call. An `async` block, not an `async fn`: the latter keeps its
    /// arguments twice in its state (rustc#62958; 128 bytes here), and a
    /// call's future must stay within glibc's largest thread-cached size
    /// (1,032 bytes, with its span; it is 792) or each one is allocated
    /// through the arena (callgrind: 260 instructions more a call on lapin;
    /// sizes from `-Zprint-type-sizes`, docs/BENCHMARKS.md).
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice in its state"
    )]
    pub(crate) fn call(
        self: Arc<Self>,
        mut spec: CallSpec,
        span: tracing::Span,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send + 'static {
        async move {
            let deadline = self.deadline_for(&spec)?;
            let headers = self.headers(&mut spec, deadline, &span)?;
            let method = spec.site.method;
            let answer = |outcome: Outcome| match outcome {
                Ok(reply) => Ok(reply),
                // An ended session is told apart (lost, or closed by the
                // application) by `session_ended` before `answer` is asked.
                Err(Unanswered::SessionEnded) => {
                    Err(Failed::Rpc(RpcError::ConnectionLost { method }))
                }
                Err(Unanswered::Returned) => Err(Failed::Rpc(RpcError::NoSuchService {
                    queue: spec.queue.as_ref().to_owned(),
                })),
                Err(Unanswered::TimedOut) => Err(Failed::TimedOut),
            };
            // Requests the broker returned although their queue exists, and
            // requests it refused.
            let (mut returns, mut refusals) = (0u32, 0u32);
            let ended: Result<Vec<u8>, Failed> = 'call: {
                // The rare paths (waiting for a session, for a lost session's
                // publication, asking whether a server is there, replacing a
                // channel) are boxed: their timers and channel openings would
                // otherwise more than double the size of every call's future.
                let mut session = match self.current_session(0) {
                    Some(session) => session,
                    None => match Box::pin(self.next_session(0, deadline, method)).await {
                        Ok(session) => session,
                        Err(failed) => break 'call Err(failed),
                    },
                };
                if spec.require_server.unwrap_or(self.config.require_server)
                    && let Err(error) =
                        Box::pin(self.check_server(&session, &spec.queue, deadline)).await
                {
                    break 'call Err(Failed::Rpc(error));
                }
                // Channels for calls opened because this call's could not send.
                let mut reopened = 0u32;
                'sessions: loop {
                    // One attempt on `session`; leaving the block means the
                    // request was not sent, and the next session is tried.
                    'attempt: {
                        // The confirm patience, with confirms: the table wakes
                        // the call once if it runs out first (no timer per call).
                        let patience = self
                            .config
                            .publisher_confirms
                            .then_some(self.config.confirm_patience);
                        let Some(mut call) =
                            self.pending.register(session.id, deadline.at, patience)
                        else {
                            break 'attempt;
                        };
                        if !span.is_disabled() {
                            span.record("correlation_id", field::display(call.correlation_id()));
                        }
                        let requests = session.requests();
                        // In a block of its own: a local moved out of stays in
                        // the future's state until its scope ends, and these 200
                        // bytes would be kept through the call.
                        let mut publication = {
                            let mut properties = RequestProperties::call(
                                method,
                                call.take_correlation_id(),
                                session.reply_to.clone(),
                                deadline.remaining(),
                            );
                            properties.user_id = session.user_id.clone();
                            properties.headers = headers.clone();
                            if let Err(source) = properties.fits(session.link.frame_max()) {
                                break 'call Err(Failed::Rpc(RpcError::InvalidHeader {
                                    method,
                                    source,
                                }));
                            }
                            requests.publish(
                                Request {
                                    queue: spec.queue.clone(),
                                    body: spec.body.clone(),
                                    properties,
                                },
                                Some(deadline.at),
                            )
                        };
                        // The confirmation first: the reply, should it come
                        // sooner, waits in the table. A returned request
                        // (perhaps this one) was routed by its correlation id; a
                        // lost connection ends the session, and its calls: only
                        // what surely concerns this call is news here. Unless
                        // the deadline passes meanwhile: the publication is
                        // dropped, never written if it was still waiting for
                        // room on its channel, else finished by the channel's
                        // task (see `transport::publish`).
                        let first = tokio::select! {
                            biased;
                            verdict = &mut publication => First::Verdict(verdict),
                            event = call.next() => match event {
                                // Whether the request was sent decides between a
                                // retry and a lost call.
                                Event::Outcome(Err(Unanswered::SessionEnded)) => {
                                    // No reply will wake it now.
                                    publication.wake_on_ack();
                                    // A connection the application closes
                                    // may leave a request it was writing
                                    // without a verdict: the close ends the
                                    // call then.
                                    let sent = async {
                                        tokio::select! {
                                            sent = tokio::time::timeout_at(deadline.at, publication) => Some(sent),
                                            () = self.sessions.closed() => None,
                                        }
                                    };
                                    match Box::pin(sent).await {
                                        None => break 'call Err(Failed::Rpc(RpcError::Closed)),
                                        Some(Ok(Verdict::NotSent)) => break 'attempt,
                                        Some(Ok(_)) => {
                                            let ended = self.session_ended(&session, method, deadline);
                                            break 'call Err(Failed::Rpc(Box::pin(ended).await));
                                        }
                                        Some(Err(_)) => break 'call Err(Failed::TimedOut),
                                    }
                                }
                                Event::Outcome(outcome) => First::Outcome(outcome),
                                Event::Overdue => First::Overdue,
                            },
                        };
                        let outcome = match first {
                            First::Outcome(outcome) => outcome,
                            First::Verdict(Verdict::NotSent) => {
                                // The channel is gone; unless the session is
                                // too, a new channel sends it.
                                if reopened < MAX_REOPENED {
                                    match Box::pin(replace_within(&session, &requests, deadline))
                                        .await
                                    {
                                        Some(true) => {
                                            reopened += 1;
                                            continue 'sessions;
                                        }
                                        Some(false) => {}
                                        None => break 'call Err(Failed::TimedOut),
                                    }
                                }
                                break 'attempt;
                            }
                            First::Verdict(Verdict::Refused) => {
                                // Perhaps the channel's doing, not the queue's
                                // (see `client::session`): sent again on another.
                                refusals += 1;
                                let replaced =
                                    Box::pin(replace_within(&session, &requests, deadline)).await;
                                if replaced.is_some()
                                    && Box::pin(self.after_refusal(deadline, refusals)).await
                                {
                                    continue 'sessions;
                                }
                                break 'call Err(Failed::Rpc(RpcError::Refused { method }));
                            }
                            First::Overdue => {
                                // Neither confirmed nor refused: lost by the
                                // broker, or held by a frozen node for longer
                                // than its connections may live. Sent again, as
                                // a new request, on a new channel (its stale one
                                // may hold more such requests; it stays open for
                                // the confirmations that may still come).
                                debug!(
                                    patience = ?self.config.confirm_patience,
                                    "the broker has not confirmed a request; sending it again"
                                );
                                if Box::pin(replace_within(&session, &requests, deadline))
                                    .await
                                    .is_none()
                                {
                                    break 'call Err(Failed::TimedOut);
                                }
                                continue 'sessions;
                            }
                            First::Verdict(Verdict::Lost) => {
                                // The request was written, and then its channel
                                // failed: it may or may not have reached the
                                // queue. With the reply consumer on that channel
                                // the session ends too; with a channel of its own
                                // nothing else would end the wait, which must not
                                // last until the timeout for a reply that may
                                // never come: a new channel for the next calls,
                                // and this one fails as in flight on a lost
                                // connection, unless its reply is already here.
                                Box::pin(replace_within(&session, &requests, deadline)).await;
                                call.outcome()
                                    .now_or_never()
                                    .unwrap_or(Err(Unanswered::SessionEnded))
                            }
                            First::Verdict(Verdict::Taken | Verdict::Returned) => {
                                call.outcome().await
                            }
                        };
                        if outcome == Err(Unanswered::Returned) {
                            returns += 1;
                            match Box::pin(self.after_return(
                                &session,
                                &spec.queue,
                                deadline,
                                returns,
                            ))
                            .await
                            {
                                AfterReturn::SendAgain => continue 'sessions,
                                AfterReturn::NoQueue => {}
                                AfterReturn::NodeDown => {
                                    break 'call Err(Failed::Rpc(RpcError::QueueUnavailable {
                                        queue: spec.queue.as_ref().to_owned(),
                                    }));
                                }
                                AfterReturn::TimedOut => break 'call Err(Failed::TimedOut),
                            }
                        }
                        if outcome == Err(Unanswered::SessionEnded) {
                            let ended = self.session_ended(&session, method, deadline);
                            break 'call Err(Failed::Rpc(Box::pin(ended).await));
                        }
                        break 'call answer(outcome);
                    }
                    session = match Box::pin(self.next_session(session.id, deadline, method)).await
                    {
                        Ok(session) => session,
                        Err(failed) => break 'call Err(failed),
                    };
                }
            };
            match ended {
                Ok(reply) => Ok(reply),
                Err(Failed::Rpc(error)) => Err(error),
                // Refused until its deadline passed, perhaps while it was being
                // sent once more: refused, as it was each time the broker said.
                Err(Failed::TimedOut) if refusals > 0 => Err(RpcError::Refused { method }),
                // Every other way of timing out ends here, to say whether a
                // server was consuming the queue.
                Err(Failed::TimedOut) => {
                    Err(Box::pin(self.timed_out(&spec.queue, method, deadline)).await)
                }
            }
        }
    }

    /// Runs one call without a reply: publishes its request and waits for the
    /// broker to take it, moving on to the next session whenever the request
    /// could not be sent because its session was lost. A one-way channel
    /// refused on a connection that is up fails the call at once
    /// ([`RpcError::ChannelRefused`]): waiting would not bring a channel.
    pub(crate) async fn send_one_way(
        &self,
        mut spec: CallSpec,
        span: &tracing::Span,
    ) -> Result<(), RpcError> {
        let deadline = self.deadline_for(&spec)?;
        let headers = self.headers(&mut spec, deadline, span)?;
        let method = spec.site.method;
        let mut tries = Tries::default();
        let ended = 'send: {
            let mut session = match self.next_session(0, deadline, method).await {
                Ok(session) => session,
                Err(failed) => break 'send failed,
            };
            if spec.require_server.unwrap_or(self.config.require_server) {
                self.check_server(&session, &spec.queue, deadline).await?;
            }
            loop {
                let sent = tokio::time::timeout_at(
                    deadline.at,
                    self.send_on(&session, &spec, &headers, deadline, &mut tries),
                );
                match sent.await {
                    Ok(Sent::Done(result)) => return result,
                    Ok(Sent::Again) => continue,
                    Ok(Sent::NextSession) => {}
                    Err(_) => break 'send Failed::TimedOut,
                }
                session = match self.next_session(session.id, deadline, method).await {
                    Ok(session) => session,
                    Err(failed) => break 'send failed,
                };
            }
        };
        Err(match ended {
            Failed::Rpc(error) => error,
            Failed::TimedOut if tries.refusals > 0 => RpcError::Refused { method },
            Failed::TimedOut => self.timed_out(&spec.queue, method, deadline).await,
        })
    }

    async fn send_on(
        &self,
        session: &Session,
        spec: &CallSpec,
        headers: &RequestHeaders,
        deadline: Deadline,
        tries: &mut Tries,
    ) -> Sent {
        let publisher = match session.one_way().await {
            Ok(publisher) => publisher,
            // The connection was lost meanwhile: the next session opens one.
            Err(error) if !session.link.is_open() => {
                debug!(%error, "could not open the one-way channel");
                return Sent::NextSession;
            }
            // Refused on a connection that is up (by the broker, or by the
            // AMQP client at the connection's `channel_max`): no newer
            // session will come to try again, and trying again on this one
            // meets the same refusal.
            Err(source) => {
                return Sent::Done(Err(RpcError::ChannelRefused {
                    method: spec.site.method,
                    source,
                }));
            }
        };
        // A one-way request has no caller waiting to expire with, unless the
        // call set its own timeout.
        let remaining = spec.timeout.map(|_| deadline.remaining());
        let mut properties = RequestProperties::one_way(spec.site.method, remaining);
        properties.user_id = session.user_id.clone();
        properties.headers = headers.clone();
        if spec.timeout.is_none() {
            properties.headers.deadline = None;
        }
        if let Err(source) = properties.fits(session.link.frame_max()) {
            return Sent::Done(Err(RpcError::InvalidHeader {
                method: spec.site.method,
                source,
            }));
        }
        let request = Request {
            queue: spec.queue.clone(),
            body: spec.body.clone(),
            properties,
        };
        let method = spec.site.method;
        // As for calls (see `call`): a request the broker neither confirms
        // nor refuses is sent again on a new channel; the stale one's task
        // waits for it no longer than the session.
        let patience = self.config.confirm_patience;
        let expires = spec.timeout.map(|_| deadline.at);
        let publishing = async {
            if self.config.publisher_confirms {
                tokio::time::timeout(patience, publisher.publish(request, expires))
                    .await
                    .ok()
            } else {
                Some(publisher.publish(request, expires).await)
            }
        };
        // As for calls: a connection the application closes may leave the
        // request without a verdict.
        let verdict = tokio::select! {
            verdict = publishing => verdict,
            () = self.sessions.closed() => return Sent::Done(Err(RpcError::Closed)),
        };
        let Some(verdict) = verdict else {
            debug!(
                ?patience,
                "the broker has not confirmed a one-way request; sending it again"
            );
            session.replace_one_way(&publisher).await;
            return Sent::Again;
        };
        Sent::Done(match verdict {
            Verdict::Taken => Ok(()),
            // As for calls (see `after_return`): sent again if its queue
            // exists, or may only not have been recovered yet.
            Verdict::Returned => {
                tries.returns += 1;
                match Box::pin(self.after_return(session, &spec.queue, deadline, tries.returns))
                    .await
                {
                    // Past the deadline, the next try ends as timed out.
                    AfterReturn::SendAgain | AfterReturn::TimedOut => return Sent::Again,
                    AfterReturn::NoQueue => Err(RpcError::NoSuchService {
                        queue: spec.queue.as_ref().to_owned(),
                    }),
                    AfterReturn::NodeDown => Err(RpcError::QueueUnavailable {
                        queue: spec.queue.as_ref().to_owned(),
                    }),
                }
            }
            Verdict::Refused => {
                tries.refusals += 1;
                session.replace_one_way(&publisher).await;
                if self.after_refusal(deadline, tries.refusals).await {
                    return Sent::Again;
                }
                Err(RpcError::Refused { method })
            }
            Verdict::Lost => Err(Box::pin(self.session_ended(session, method, deadline)).await),
            Verdict::NotSent => {
                if tries.reopened < MAX_REOPENED && session.replace_one_way(&publisher).await {
                    tries.reopened += 1;
                    return Sent::Again;
                }
                return Sent::NextSession;
            }
        })
    }
}

/// Replaces `session`'s publishing channel `stale` (see
/// [`Session::replace_requests`]) within a call's deadline: `None` if the
/// deadline came first. A broker that does not answer `channel.open` (a
/// frozen node) would otherwise hold the call until its connection is
/// given up, heartbeats later.
async fn replace_within(
    session: &Session,
    stale: &Arc<CallPublisher>,
    deadline: Deadline,
) -> Option<bool> {
    tokio::time::timeout_at(deadline.at, session.replace_requests(stale))
        .await
        .ok()
}

/// When a call gives up.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    /// The same, by the wall clock, as the request's `rpc-deadline` says it.
    wall: SystemTime,
    timeout: Duration,
}

impl Deadline {
    /// The time left, for the request's `expiration`.
    fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// What came first of a request's verdict, its call's outcome, and its
/// confirmation's patience running out.
enum First {
    Verdict(Verdict),
    Outcome(Outcome),
    Overdue,
}

/// How a one-way request's attempt at sending ended.
enum Sent {
    /// For good: sent, or failed.
    Done(Result<(), RpcError>),
    /// Send it again on the same session.
    Again,
    /// Send it on the next session: this one is gone.
    NextSession,
}

/// What a one-way request met so far.
#[derive(Default)]
struct Tries {
    refusals: u32,
    reopened: u32,
    returns: u32,
}

/// What becomes of a call whose request the broker returned.
enum AfterReturn {
    /// Its queue exists: send it again.
    SendAgain,
    /// Its queue does not exist (or the broker could not say): no service.
    NoQueue,
    /// Its queue's node is down.
    NodeDown,
    /// Its deadline passed while waiting to send it again.
    TimedOut,
}

/// How long after a session replaced a lost one a request returned for
/// want of its queue is sent again rather than failed with `NoSuchService`
/// (see [`Engine::after_return`]): longer than a server's longest delay
/// before it reconnects (5 s) and declares its queue again.
const RECOVERY_GRACE: Duration = Duration::from_secs(15);

/// The first and longest delay before a returned request is sent again.
const RESEND_MIN: Duration = Duration::from_millis(20);
const RESEND_MAX: Duration = Duration::from_secs(1);
/// How often [`Engine::session_ended`] looks again whether a session that
/// failed its calls was lost or closed by the application.
const SETTLING: Duration = Duration::from_millis(1);
/// How many new channels a call opens when its request could not be
/// written (its channel was gone), before it waits for the next session.
const MAX_REOPENED: u32 = 2;

/// How a call failed, before a timeout is told apart by asking whether a
/// server was there.
enum Failed {
    Rpc(RpcError),
    TimedOut,
}

impl From<RpcError> for Failed {
    fn from(error: RpcError) -> Self {
        Failed::Rpc(error)
    }
}
