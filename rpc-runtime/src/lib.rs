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
//! The wire protocol is documented in `docs/PROTOCOL.md`, so that clients and
//! servers in other languages can take part.

#![warn(missing_docs, clippy::unwrap_used)]

mod ack_policy;
mod admission;
mod backoff;
mod broker_url;
mod call;
mod client;
mod clock;
mod connection;
mod digits;
mod error;
mod log_budget;
mod pending;
mod presence;
pub mod protocol;
mod publisher;
mod server;
mod service;

pub use admission::{DEFAULT_MAX_REQUEST_SIZE, ReplyToPolicy};
pub use broker_url::redact_url;
pub use call::{Call, CallFuture, Fallible, Plain, Returns};
pub use client::{Client, ClientBuilder, DEFAULT_TIMEOUT, ReplyTo};
pub use connection::{Connection, ConnectionBuilder};
pub use error::{CallError, ConnectError, Fault, FaultKind, RpcError, ServeError};
pub use server::{
    DEFAULT_PREFETCH, DEFAULT_SHUTDOWN_GRACE, QueueType, Server, ServerBuilder, ServerHandle,
    shutdown_on_signal,
};
pub use service::{RequestContext, Service};

#[doc = include_str!("rpc_service.md")]
pub use rpc_macros::rpc_service;

/// The AMQP client this crate is built on, for what it does not wrap.
pub use lapin;

/// Support for the code `#[rpc_service]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::protocol::{ArgsDecoder, ArgsEncoder, encode_ok, encode_result};
    pub use std::{boxed::Box, string::String, sync::Arc, vec::Vec};

    /// The queue name a generated client sends to.
    pub fn queue_name(name: &str) -> Arc<str> {
        Arc::from(name)
    }
}
