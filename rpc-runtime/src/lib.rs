//! Typed request/reply RPC over AMQP 0-9-1 (RabbitMQ).
//!
//! Annotate a trait with [`rpc_service`], and get a typed client stub and a
//! server dispatcher that speak the RabbitMQ RPC pattern (`reply_to` and
//! `correlation_id`, MessagePack bodies) with production semantics: timeouts,
//! a fast failure when no server is there, application errors forwarded to the
//! caller, faults for bad input, reconnection, and competing servers.
//!
//! ```no_run
//! use rpc_runtime::{Client, Connection, Server, rpc_service};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize, thiserror::Error)]
//! #[error("fib({0}) does not fit in a u64")]
//! pub struct Overflow(u32);
//!
//! #[rpc_service(queue = "rpc_queue")]
//! pub trait Fibonacci {
//!     /// The n-th Fibonacci number.
//!     async fn fib(&self, n: u32) -> Result<u64, Overflow>;
//! }
//!
//! struct Iterative;
//!
//! impl Fibonacci for Iterative {
//!     async fn fib(&self, n: u32) -> Result<u64, Overflow> {
//!         // (fib(i - 1), fib(i)), from fib(-1) = 1 and fib(0) = 0.
//!         let (mut previous, mut current) = (1u64, 0u64);
//!         for _ in 0..n {
//!             let next = previous.checked_add(current).ok_or(Overflow(n))?;
//!             (previous, current) = (current, next);
//!         }
//!         Ok(current)
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> anyhow::Result<()> {
//!     let connection = Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
//!     let server = Server::serve(&connection, FibonacciServer::new(Iterative)).await?;
//!
//!     let client = FibonacciClient::new(Client::new(&connection).await?);
//!     assert_eq!(client.fib(30).await?, 832040);
//!
//!     server.shutdown().await;
//!     Ok(())
//! }
//! ```
//!
//! # Concepts
//!
//! - A [`Connection`] is one AMQP connection to the broker, shared by any
//!   number of clients and servers, that reconnects by itself.
//! - A [`Client`] sends calls: each call publishes a *request* to the
//!   service's *request queue* (with a `reply_to` and a unique
//!   `correlation_id`) and waits for its *reply*. A generated `FooClient`
//!   wraps a `Client`; its methods return a [`Call`] to configure and await.
//! - A [`Server`] serves one [`Service`] (the generated `FooServer<S>`) on its
//!   request queue: it runs up to its prefetch of requests at once,
//!   publishes each reply, then acknowledges the request. Any number of
//!   servers may consume one queue; each request goes to one of them.
//! - A *session* is what a client or a server sets up on one connection to
//!   do its work: a channel with its consumer (of replies, or of requests).
//!   When the channel or the connection is lost, the session ends: a client's
//!   calls in flight fail at once with [`RpcError::ConnectionLost`], a
//!   server's unacknowledged requests go back to the queue; a new session is
//!   set up as soon as the connection allows.
//! - Every call ends with its reply or with an error that says what happened
//!   to its request ([`RpcError`]); a method's own error type travels as
//!   [`CallError::App`]. Requests run *at least once*: a server that dies
//!   before acknowledging a request has it redelivered, so methods must be
//!   idempotent ([`RequestContext::redelivered`] tells).
//!
//! # Where things live
//!
//! The wire format is `protocol` (and `docs/PROTOCOL.md`, section by
//! section); reply matching is `client::pending`; the acknowledgement policy
//! is `server::ack_policy`; what a request must look like to run is
//! `server::admission`; reconnection is `connection` (the connection) and
//! `session` (clients' and servers' sessions); the AMQP client library,
//! lapin (or amqprs, with the `amqprs` feature: [`TRANSPORT`]), is behind
//! `transport`. `docs/ARCHITECTURE.md` follows one call through them.
//!
//! The wire protocol is documented in `docs/PROTOCOL.md`, so that clients and
//! servers in other languages can take part.

#![warn(missing_docs, clippy::unwrap_used)]

mod backoff;
mod broker_url;
mod client;
mod clock;
mod connection;
mod error;
mod metadata;
mod protocol;
mod server;
mod session;
mod spans;
mod trace;
mod transport;

pub use client::{
    Client, ClientBuilder,
    call::{Call, CallFuture, Fallible, Plain, Raw, RawReply, Returns},
    config::{DEFAULT_CONFIRM_PATIENCE, DEFAULT_TIMEOUT, ReplyTo},
    intercept::{InterceptError, OutgoingCall},
};
pub use connection::{Connection, ConnectionBuilder};
pub use error::{CallError, ConnectError, RpcError, ServeError};
pub use metadata::{InvalidHeader, Metadata};
pub use protocol::{
    DEFAULT_MAX_REQUEST_SIZE,
    describe::{
        ArgDescription, DESCRIBE_METHOD, Field, MethodDescription, ServiceDescription, Shape,
        TypeDefinition, TypeRef, Variant, VariantFields,
    },
    fault::{Fault, FaultKind},
    reply::ReplyBody,
    reply_address::ReplyToPolicy,
};
pub use server::{
    DEFAULT_PREFETCH, DEFAULT_SHUTDOWN_GRACE, QueueType, Server, ServerBuilder, ServerHandle,
    context::RequestContext, service::Service, signal::shutdown_on_signal,
};
pub use spans::DEFAULT_SPAN_LEVEL;
pub use transport::{AmqpError, TRANSPORT};

#[doc = include_str!("rpc_service.md")]
pub use rpc_macros::rpc_service;

/// The AMQP client this crate is built on, for what it does not wrap.
pub use lapin;

/// Support for the code `#[rpc_service]` generates, and for this
/// repository's tests and fuzzers. Not a public API: it may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    pub use crate::{
        client::observe::{CallSite, Outcome},
        protocol::{
            args::{ArgsDecoder, ArgsEncodeError, ArgsEncoder},
            reply::{encode_ok, encode_result},
        },
        server::introspection::{Describer, TraceDeserialize, TraceNothing, TypeTrace},
    };
    pub use std::{boxed::Box, string::String, sync::Arc, vec::Vec};

    /// The fault for a request to `service` whose `type` names none of its
    /// methods: the caller may have the method's name wrong, or sent to a
    /// queue another service consumes too, which the caller cannot tell
    /// without the name of the service that answered.
    pub fn unknown_method(service: &str, method: &str) -> crate::Fault {
        crate::Fault::new(
            crate::FaultKind::UnknownMethod,
            format!(
                "the service `{service}` has no method `{method}` (check the method's name, and \
                 that no other service consumes the same queue)"
            ),
        )
    }

    /// The queue name a generated client sends to.
    pub fn queue_name(name: &str) -> Arc<str> {
        Arc::from(name)
    }
}
