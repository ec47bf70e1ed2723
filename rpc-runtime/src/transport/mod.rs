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
//!
//! Why the client library's own automatic recovery is not used is in
//! [`connection`](crate::connection).

mod lapin;
pub(crate) use self::lapin::{client, link, probe, properties, publish, server};

use std::fmt;

/// What the broker or the AMQP client reported: a refused channel or queue
/// (with the broker's reply code, say 404 or 406), a lost connection, a
/// failed handshake.
#[derive(Clone)]
pub struct AmqpError(::lapin::Error);

impl AmqpError {
    /// The AMQP reply code, when the broker refused something (for example
    /// 403 access refused, 404 not found, 406 precondition failed).
    pub fn reply_code(&self) -> Option<u16> {
        match self.0.kind() {
            ::lapin::ErrorKind::ProtocolError(error) => Some(error.get_id()),
            _ => None,
        }
    }
}

impl From<::lapin::Error> for AmqpError {
    fn from(error: ::lapin::Error) -> Self {
        Self(error)
    }
}

impl fmt::Display for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for AmqpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::error::Error for AmqpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // This error's message is lapin's; what lapin's wraps comes next.
        std::error::Error::source(&self.0)
    }
}
