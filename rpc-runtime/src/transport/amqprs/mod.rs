//! The transport on amqprs (the `amqprs` feature): each module carries what
//! its namesake in [`transport`](super) lists, with amqprs's types, and
//! offers the lapin transport's names and guarantees.
//!
//! Where amqprs differs from lapin, and how that is made up for here:
//!
//! - **Errors.** amqprs reports a channel or connection the broker closed
//!   only to the channel's or connection's callback; the operation that
//!   was waiting fails with an internal "channel closed" error, without the
//!   reply code. So every channel is opened with a callback ([`Callback`])
//!   that keeps the broker's `channel.close` ([`Closed`]), and an operation
//!   that fails reports that, with its reply code (404, 403, 406), as
//!   lapin's `ProtocolError` does ([`AmqpChannel::error`]); likewise the
//!   connection's `connection.close` ([`link`]).
//! - **Confirms and returns.** amqprs has no confirmation future per
//!   publication, only the callback's `basic.ack`, `basic.nack` and
//!   `basic.return`: [`publish`] numbers its publications itself, as the
//!   broker does, and the callback resolves them; a returned request is
//!   routed by its correlation id from the callback.
//! - **Writes on a closed channel.** lapin refuses them; amqprs writes them,
//!   and a frame on a channel the broker has closed is a connection error
//!   (504 CHANNEL_ERROR) that would take every session of the connection
//!   down. So every write first checks that its channel is open.
//! - **Ends of streams.** An amqprs consumer is a plain receiver: it ends
//!   (`None`) when the broker cancels it, when its channel closes and when
//!   the connection is lost alike; what ended it is read from the channel's
//!   and the connection's state ([`AmqpChannel::ended`]).
//! - **Requests given up half-way.** amqprs fails the whole connection
//!   when the broker's `channel.open-ok` finds no one waiting for it (its
//!   reader task treats the failed hand-over as a broken connection), and
//!   its channel task panics when a `channel.close-ok` does. A caller that
//!   stops waiting (a deadline, a dropped future) must not do that: opening
//!   and closing a channel, the probe's questions, a request channel's
//!   `confirm.select` and a server's consumer cancel run in tasks of the
//!   link's ([`AmqpChannel::ask`]), which finish whatever their caller
//!   does. Those tasks still open channels: the probe waits for the one it
//!   began rather than open another (`probe.rs`), else a broker that stops
//!   reading would see a channel opened per question given up, until the
//!   channel numbers ran out (below).
//!   amqprs's channel task also panics when an operation is dropped between
//!   its registration and the registration's acknowledgement, as a runtime
//!   drops its tasks once `main` returns: closing the connection waits for
//!   the link's tasks first (and the connection's close closes its
//!   channels, which are not closed one by one then).
//! - **Closing.** amqprs closes a channel and the connection with reply code
//!   200 and no reply text (the reason given is only logged), and closes
//!   them when their last handle is dropped. A channel the broker closed
//!   keeps its channel number on the connection (amqprs releases a number
//!   only after a `channel.close-ok` to its own close): a connection that
//!   sees some two thousand such closes (each probe of a missing queue is
//!   one) would run out of channel numbers, and amqprs's reader task would
//!   panic on the next channel (its allocation expects a free number),
//!   leaving a connection that nothing reads and that does not know it is
//!   closed. So the link counts the numbers kept, and once half of the
//!   connection's are, it closes the connection and reports it lost
//!   ([`link`]): it is replaced as a lost one is, long before.

pub(crate) mod client;
pub(crate) mod link;
pub(crate) mod probe;
pub(crate) mod properties;
pub(crate) mod publish;
pub(crate) mod server;

use super::{AmqpError, Repr};
use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, Nack, Return, callbacks::ChannelCallback,
    channel::Channel,
};
use async_trait::async_trait;
use link::{Link, LinkState};
use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, atomic::Ordering},
};
use tracing::debug;

/// What amqprs reported: the broker's close of a channel or of the
/// connection (with its reply code), amqprs's own error, or one of this
/// transport's (a TLS setting that cannot be used, say).
#[derive(Clone)]
pub(super) enum Reported {
    Closed(Closed),
    Client(Arc<amqprs::error::Error>),
    Other(Arc<str>),
}

impl Reported {
    pub(super) fn reply_code(&self) -> Option<u16> {
        match self {
            Self::Closed(closed) => Some(closed.code),
            Self::Client(_) | Self::Other(_) => None,
        }
    }

    pub(super) fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Client(error) => std::error::Error::source(&**error),
            Self::Closed(_) | Self::Other(_) => None,
        }
    }
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(closed) => fmt::Display::fmt(closed, f),
            Self::Client(error) => fmt::Display::fmt(error, f),
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl fmt::Debug for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed(closed) => fmt::Debug::fmt(closed, f),
            Self::Client(error) => fmt::Debug::fmt(error, f),
            Self::Other(message) => fmt::Debug::fmt(message, f),
        }
    }
}

impl AmqpError {
    fn amqprs(reported: Reported) -> Self {
        Self(Repr::Amqprs(reported))
    }

    /// The broker closed a channel or the connection.
    pub(super) fn closed(closed: Closed) -> Self {
        Self::amqprs(Reported::Closed(closed))
    }

    /// One of this transport's own errors.
    pub(super) fn other(message: impl Into<Arc<str>>) -> Self {
        Self::amqprs(Reported::Other(message.into()))
    }
}

impl From<amqprs::error::Error> for AmqpError {
    fn from(error: amqprs::error::Error) -> Self {
        Self::amqprs(Reported::Client(Arc::new(error)))
    }
}

/// The broker's `channel.close` or `connection.close`: its reply code and
/// text, and the method that it refused.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Closed {
    pub(super) code: u16,
    pub(super) text: String,
    pub(super) class_id: u16,
    pub(super) method_id: u16,
}

impl fmt::Display for Closed {
    /// The reply code, and the broker's reply text, which names the
    /// condition ("NOT_FOUND - no queue 'q' in vhost '/'").
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "protocol error: the broker closed with {}: {}",
            self.code, self.text
        )
    }
}

impl fmt::Debug for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Closed")
            .field("code", &self.code)
            .field("text", &self.text)
            .field("class_id", &self.class_id)
            .field("method_id", &self.method_id)
            .finish()
    }
}

impl From<&CloseChannel> for Closed {
    fn from(close: &CloseChannel) -> Self {
        Self {
            code: close.reply_code(),
            text: close.reply_text().clone(),
            class_id: close.class_id(),
            method_id: close.method_id(),
        }
    }
}

/// Locks `mutex`, whatever a panic elsewhere left in it: the state kept
/// under these locks (confirmations waited for) is valid after any step.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a channel's callback keeps for the channel's users.
#[derive(Default)]
struct ChannelState {
    /// The broker's `channel.close`, once it came.
    closed: OnceLock<Closed>,
    /// Publisher confirmations waited for, on a channel for requests.
    confirms: Mutex<publish::Confirms>,
    /// Where requests the broker returns go, on a channel for requests.
    returned_to: OnceLock<publish::ReturnedTo>,
}

/// One AMQP channel, with what its [`Callback`] saw. A clone is another
/// handle on the same channel (amqprs closes it when the last is dropped).
#[derive(Clone)]
pub(super) struct AmqpChannel {
    amqp: Channel,
    state: Arc<ChannelState>,
    link: Arc<LinkState>,
}

impl AmqpChannel {
    /// Opens a channel on `link`, its callback registered before anything
    /// is asked on it. In a task of its own, which a caller that stops
    /// waiting leaves to finish (see the module doc).
    pub(super) async fn open(link: &Link) -> Result<Self, AmqpError> {
        let (connection, link_state) = (Arc::clone(&link.amqp), link.state.clone());
        let opening = link.state.tasks.spawn(async move {
            let amqp = match connection.open_channel(None).await {
                Ok(amqp) => amqp,
                Err(error) => return Err(link_state.error(error)),
            };
            let state = Arc::new(ChannelState::default());
            let channel = Self {
                amqp,
                state: state.clone(),
                link: link_state,
            };
            channel
                .amqp
                .register_callback(Callback {
                    state,
                    link: channel.link.clone(),
                })
                .await
                .map_err(|error| channel.error(error))?;
            Ok(channel)
        });
        opening
            .await
            .unwrap_or_else(|error| Err(AmqpError::other(format!("opening a channel: {error}"))))
    }

    /// amqprs's channel.
    pub(super) fn amqp(&self) -> &Channel {
        &self.amqp
    }

    /// Whether the channel is open (and its connection too): nothing may be
    /// written on it otherwise.
    pub(super) fn is_open(&self) -> bool {
        self.amqp.is_open() && self.amqp.is_connection_open()
    }

    /// What an operation that failed with `error` reports: the broker's
    /// close of the channel or of the connection if that is what failed it.
    pub(super) fn error(&self, error: amqprs::error::Error) -> AmqpError {
        match self.state.closed.get() {
            Some(closed) => AmqpError::closed(closed.clone()),
            None => self.link.error(error),
        }
    }

    /// What a write refused because the channel is closed reports.
    pub(super) fn closed_error(&self) -> AmqpError {
        match self.state.closed.get() {
            Some(closed) => AmqpError::closed(closed.clone()),
            None => self.link.closed_error(),
        }
    }

    /// Why a consumer on this channel ended; `None` if the channel is still
    /// open, so that the broker (or this side) cancelled the consumer.
    pub(super) fn ended(&self) -> Option<String> {
        if let Some(closed) = self.state.closed.get() {
            return Some(closed.to_string());
        }
        if self.is_open() {
            return None;
        }
        Some(self.closed_error().to_string())
    }

    /// Closes the channel (amqprs sends reply code 200 without text:
    /// `reason` is only logged). In a task of its own, as [`open`](Self::open).
    pub(super) async fn close(&self, reason: &str) {
        // A connection the application closes closes its channels.
        if self.is_open() && !self.link.closing.load(Ordering::Relaxed) {
            debug!(reason, "closing a channel");
            let _ = self.link.tasks.spawn(self.amqp.clone().close()).await;
        }
    }

    /// Runs `question` (a method amqprs answers, such as a passive
    /// declare) in a task of the link's, as [`open`](Self::open): a caller
    /// that stops waiting leaves it to finish.
    pub(super) async fn ask<T: Send + 'static>(
        &self,
        question: impl Future<Output = Result<T, amqprs::error::Error>> + Send + 'static,
    ) -> Result<T, amqprs::error::Error> {
        match self.link.tasks.spawn(question).await {
            Ok(answer) => answer,
            Err(_) => Err(amqprs::error::Error::ChannelUseError(
                "the task asking the broker ended".to_owned(),
            )),
        }
    }

    fn confirms(&self) -> MutexGuard<'_, publish::Confirms> {
        lock(&self.state.confirms)
    }
}

/// The callback of every channel: keeps the broker's close, resolves
/// publisher confirmations, routes returned requests.
struct Callback {
    state: Arc<ChannelState>,
    link: Arc<LinkState>,
}

#[async_trait]
impl ChannelCallback for Callback {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        debug!(code = close.reply_code(), text = %close.reply_text(), "the broker closed a channel");
        let _ = self.state.closed.set(Closed::from(&close));
        // Its number stays taken (see the module doc).
        self.link.channel_number_kept();
        // Ok: amqprs then answers with `channel.close-ok`.
        Ok(())
    }

    async fn cancel(
        &mut self,
        _channel: &Channel,
        cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        // Ok: amqprs then drops the consumer's sender, which ends its
        // stream.
        debug!(consumer = %cancel.consumer_tag(), "the broker cancelled a consumer");
        Ok(())
    }

    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        // (sic: amqprs's spelling)
        lock(&self.state.confirms).resolve(ack.delivery_tag(), ack.mutiple(), true);
    }

    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        lock(&self.state.confirms).resolve(nack.delivery_tag(), nack.multiple(), false);
    }

    /// The broker returns a `mandatory` request before it confirms it, on
    /// the same channel: the call learns of it before its confirmation.
    async fn publish_return(
        &mut self,
        _channel: &Channel,
        ret: Return,
        properties: BasicProperties,
        _body: Vec<u8>,
    ) {
        debug!(%ret, "the broker returned a request");
        lock(&self.state.confirms).returned();
        if let Some(returned_to) = self.state.returned_to.get() {
            returned_to(properties.correlation_id().map(String::as_str));
        }
    }
}

impl Drop for Callback {
    /// amqprs drops the callback when the channel ends (closed, or its
    /// connection lost): the confirmations still waited for end with it.
    fn drop(&mut self) {
        lock(&self.state.confirms).end();
    }
}
