//! The AMQP client underneath: the one module that speaks to a client
//! library.
//!
//! Everything that touches the client library's types lives here, so that
//! the code above speaks of what the protocol is made of (requests, replies,
//! publisher confirmations, returned requests, acknowledgements, a queue's
//! consumer count) and not of the client library that carries them. The
//! types here are concrete: one client library per build, one set of types.
//! lapin carries the protocol by default (module `lapin`); with the
//! `amqprs` feature, amqprs does, behind the same names (`amqprs`, whose
//! module doc says where it differs from lapin and how that is made up
//! for).
//!
//! | module | what it carries |
//! |---|---|
//! | [`link`] | one AMQP connection: dialling it (TCP, TLS, handshake, with a timeout), and noticing when it is lost |
//! | [`publish`] | requests, `mandatory` and with publisher confirms, each seen to its broker's verdict; returned requests routed by correlation id |
//! | [`client`] | a client session's channels: its reply address and the stream of replies |
//! | [`server`] | a server session's channel: the stream of requests, and its writes (replies, acknowledgements, rejections) |
//! | [`probe`] | a queue's consumer count, from a passive declare |
//! | [`properties`] | AMQP properties, to and from the protocol's own |
//! | `shared` | the types both transports' modules offer alike (a request to publish, its verdict, how a queue is declared, what a probe found), re-exported by each |
//!
//! Why the client library's own automatic recovery is not used is in
//! [`connection`](crate::connection).

#[cfg(feature = "amqprs")]
mod amqprs;
#[cfg(not(feature = "amqprs"))]
mod lapin;
mod shared;
#[cfg(feature = "amqprs")]
pub(crate) use self::amqprs::{client, link, probe, properties, publish, server};
#[cfg(not(feature = "amqprs"))]
pub(crate) use self::lapin::{client, link, probe, properties, publish, server};

use std::fmt;

/// The AMQP client library that carries this build's requests: `"lapin"`,
/// or `"amqprs"` with the `amqprs` feature. For a service's start-up log,
/// and for benchmarks that name what they measured.
///
/// ```
/// assert!(["lapin", "amqprs"].contains(&rpc_runtime::TRANSPORT));
/// ```
pub const TRANSPORT: &str = if cfg!(feature = "amqprs") {
    "amqprs"
} else {
    "lapin"
};

/// What the broker or the AMQP client reported: a refused channel or queue
/// (with the broker's reply code, say 404 or 406), a lost connection, a
/// failed handshake.
#[derive(Clone)]
pub struct AmqpError(Repr);

/// lapin's error, or (with the `amqprs` feature) what amqprs reported.
#[derive(Clone)]
enum Repr {
    Lapin(::lapin::Error),
    #[cfg(feature = "amqprs")]
    Amqprs(self::amqprs::Reported),
}

impl AmqpError {
    /// The AMQP reply code, when the broker refused something (for example
    /// 403 access refused, 404 not found, 406 precondition failed).
    pub fn reply_code(&self) -> Option<u16> {
        match &self.0 {
            Repr::Lapin(error) => match error.kind() {
                ::lapin::ErrorKind::ProtocolError(error) => Some(error.get_id()),
                _ => None,
            },
            #[cfg(feature = "amqprs")]
            Repr::Amqprs(reported) => reported.reply_code(),
        }
    }
}

impl From<::lapin::Error> for AmqpError {
    fn from(error: ::lapin::Error) -> Self {
        Self(Repr::Lapin(error))
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Lapin(error) => fmt::Display::fmt(error, f),
            #[cfg(feature = "amqprs")]
            Repr::Amqprs(reported) => fmt::Display::fmt(reported, f),
        }
    }
}

impl fmt::Debug for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Lapin(error) => fmt::Debug::fmt(error, f),
            #[cfg(feature = "amqprs")]
            Repr::Amqprs(reported) => fmt::Debug::fmt(reported, f),
        }
    }
}

impl std::error::Error for AmqpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.0 {
            // This error's message is lapin's; what lapin's wraps comes next.
            Repr::Lapin(error) => std::error::Error::source(error),
            #[cfg(feature = "amqprs")]
            Repr::Amqprs(reported) => reported.source(),
        }
    }
}
