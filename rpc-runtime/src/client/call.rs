//! One call, as a generated client method returns it: configure it, then
//! `.await` it.

use super::{
    Client,
    engine::CallSpec,
    observe::{CallSite, Observed, Outcome},
};
use crate::{
    error::{CallError, RpcError},
    metadata::{InvalidHeader, Metadata},
    protocol::{
        args::ArgsEncodeError,
        msgpack::value_len,
        reply::{Reply, decode_value},
    },
    trace::Origin,
};
use serde::de::DeserializeOwned;
use std::{
    fmt,
    future::{Future, IntoFuture},
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tracing::Instrument;

/// A call to a service method, ready to be sent.
///
/// Await it to send the request and wait for the reply; adjust it before with
/// [`Call::timeout`], or send it without waiting for a reply with
/// [`Call::one_way`]. `R` says how the reply is decoded: [`Plain`] for methods
/// returning a plain `T`, [`Fallible`] for methods returning `Result<T, E>`.
///
/// ```no_run
/// # use rpc_runtime::rpc_service;
/// # #[rpc_service]
/// # pub trait Fibonacci { async fn fib(&self, n: u32) -> u64; }
/// # async fn demo(client: FibonacciClient) -> Result<(), rpc_runtime::RpcError> {
/// use std::time::Duration;
/// let n = client.fib(30).await?;
/// let quick = client.fib(10).timeout(Duration::from_millis(250)).await?;
/// client.fib(5).one_way().await?; // runs on the server; nobody waits for the result
/// # Ok(()) }
/// ```
///
/// A `Call` is [`IntoFuture`](std::future::IntoFuture), not a `Future`:
/// where a `Future` is asked for (`tokio::spawn`, `join_all`,
/// `FuturesUnordered`), turn it into one with `.into_future()`:
///
/// ```no_run
/// # use rpc_runtime::rpc_service;
/// # #[rpc_service]
/// # pub trait Fibonacci { async fn fib(&self, n: u32) -> u64; }
/// # async fn demo(client: FibonacciClient) -> Result<(), Box<dyn std::error::Error>> {
/// use std::future::IntoFuture;
/// let in_flight = tokio::spawn(client.fib(30).into_future());
/// let n = in_flight.await??;
/// # Ok(()) }
/// ```
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<R> {
    client: Client,
    queue: Arc<str>,
    site: &'static CallSite,
    args: Result<Vec<u8>, ArgsEncodeError>,
    timeout: Option<Duration>,
    require_server: Option<bool>,
    metadata: Metadata,
    invalid_header: Option<InvalidHeader>,
    returns: PhantomData<fn() -> R>,
}

impl<R> Call<R> {
    /// Used by generated clients.
    #[doc(hidden)]
    pub fn new(
        client: &Client,
        queue: &Arc<str>,
        site: &'static CallSite,
        args: Result<Vec<u8>, ArgsEncodeError>,
    ) -> Self {
        Self {
            client: client.clone(),
            queue: queue.clone(),
            site,
            args,
            timeout: None,
            require_server: None,
            metadata: Metadata::new(),
            invalid_header: None,
            returns: PhantomData,
        }
    }

    /// Attaches call metadata: header `name` with `value`, for the handler
    /// to read with [`RequestContext::header`](crate::RequestContext::header)
    /// (see [`Metadata`] for the names allowed; a name that is not fails the
    /// call with [`RpcError::InvalidHeader`] without sending it, as do
    /// headers too large for one AMQP frame, 128 KiB with RabbitMQ's
    /// defaults: [`InvalidHeader::TooLarge`]).
    ///
    /// ```no_run
    /// # use rpc_runtime::rpc_service;
    /// # #[rpc_service]
    /// # pub trait Fibonacci { async fn fib(&self, n: u32) -> u64; }
    /// # async fn demo(client: FibonacciClient) -> Result<(), rpc_runtime::RpcError> {
    /// let n = client.fib(30).header("tenant", "acme").await?;
    /// # Ok(()) }
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if let Err(invalid) = self.metadata.insert(name, value) {
            self.invalid_header.get_or_insert(invalid);
        }
        self
    }

    /// What the engine needs to send the call, made in `span`; or why it
    /// cannot be sent. Run where the call is made, not where it is awaited
    /// (see [`Origin`]).
    fn spec(self, span: &tracing::Span) -> (Result<CallSpec, RpcError>, Client, &'static CallSite) {
        let method = self.site.method;
        let spec = match (self.args, self.invalid_header) {
            (Err(error), _) => Err(RpcError::Encode {
                method,
                message: error.to_string(),
            }),
            (Ok(_), Some(source)) => Err(RpcError::InvalidHeader { method, source }),
            (Ok(body), None) => Ok(CallSpec {
                queue: self.queue,
                site: self.site,
                body: Arc::new(body),
                timeout: self.timeout,
                require_server: self.require_server,
                metadata: self.metadata,
                origin: match self.client.engine.config.trace_context {
                    true => Origin::here(span),
                    false => Origin::default(),
                },
            }),
        };
        (spec, self.client, self.site)
    }

    /// Waits at most `timeout` for the reply (instead of the client's
    /// default); the request's `expiration` is set to the same, capped at
    /// ten years, the most the broker accepts.
    /// Any duration is accepted: `Duration::MAX` waits as good as forever;
    /// zero fails with [`RpcError::Timeout`] without sending the request.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Fails at once with [`RpcError::NoServer`] if the request queue exists
    /// but no server consumes it, instead of letting the request wait there
    /// for one (see [`ClientBuilder::require_server`](crate::ClientBuilder::require_server)).
    pub fn require_server(mut self) -> Self {
        self.require_server = Some(true);
        self
    }

    /// Sends the request without a `reply_to`: the server runs the method and
    /// sends no reply.
    ///
    /// With publisher confirms (the default), resolves once the broker has
    /// taken the request, and fails with [`RpcError::NoSuchService`] if no
    /// queue takes it. Without them
    /// ([`ClientBuilder::publisher_confirms(false)`](crate::ClientBuilder::publisher_confirms)),
    /// it is fire-and-forget: `Ok(())` means only that the request was
    /// handed to the connection to be written to its socket, not that the
    /// broker or any queue took it; a request to a queue that does not exist
    /// is dropped by the broker, and the call still returns `Ok(())` (unless
    /// it [requires a server](Self::require_server): the broker is asked
    /// first).
    pub async fn one_way(self) -> Result<(), RpcError> {
        let mut observed = self
            .site
            .start(&self.queue, self.client.engine.config.span_level);
        let span = observed.span.clone();
        let (spec, client) = match self.spec(&span) {
            (Ok(spec), client, _) => (spec, client),
            (Err(error), ..) => {
                observed.ended(Outcome::of(&error));
                return Err(error);
            }
        };
        let sent = client
            .engine
            .send_one_way(spec, &span)
            .instrument(span.clone())
            .await;
        observed.ended(match &sent {
            Ok(()) => Outcome::Ok,
            Err(error) => Outcome::of(error),
        });
        sent
    }
}

impl<R> fmt::Debug for Call<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("queue", &self.queue)
            .field("site", &self.site)
            .field("timeout", &self.timeout)
            .field("metadata", &self.metadata)
            .finish_non_exhaustive()
    }
}

impl<R: Returns> IntoFuture for Call<R> {
    type Output = R::Output;
    type IntoFuture = CallFuture<R>;

    fn into_future(self) -> CallFuture<R> {
        let observed = self
            .site
            .start(&self.queue, self.client.engine.config.span_level);
        let reply: Replying = match self.spec(&observed.span) {
            // The client's call future is boxed as it is made and only the
            // box moves; decoding, the one part that depends on `R`, happens
            // in `CallFuture::poll`, outside it. It runs in the call's span
            // (a child of the span it is made in).
            (Ok(spec), client, _) => {
                let span = observed.span.clone();
                Box::pin(client.engine.call(spec, span.clone()).instrument(span))
            }
            (Err(error), ..) => Box::pin(std::future::ready(Err(error))),
        };
        CallFuture {
            observed,
            reply,
            returns: PhantomData,
        }
    }
}

/// A call's reply body on its way, or why none will come.
type Replying = Pin<Box<dyn Future<Output = Result<Vec<u8>, RpcError>> + Send>>;

/// A [`Call`] being awaited: resolves to the decoded reply.
///
/// What `.await` on a [`Call`] runs; there is no need to name it, except to
/// store a call in flight in a struct.
///
/// ```no_run
/// # use rpc_runtime::rpc_service;
/// # #[rpc_service]
/// # pub trait Fibonacci { async fn fib(&self, n: u32) -> u64; }
/// # async fn demo(client: FibonacciClient) -> Result<(), rpc_runtime::RpcError> {
/// use std::future::IntoFuture;
/// use rpc_runtime::{CallFuture, Plain};
/// let in_flight: CallFuture<Plain<u64>> = client.fib(30).into_future();
/// let n = in_flight.await?;
/// # Ok(()) }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct CallFuture<R> {
    observed: Observed,
    reply: Replying,
    returns: PhantomData<fn() -> R>,
}

impl<R: Returns> Future for CallFuture<R> {
    type Output = R::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R::Output> {
        let method = self.observed.method();
        let output = match std::task::ready!(self.reply.as_mut().poll(cx)) {
            Ok(reply) => R::decode(method, &reply),
            Err(error) => R::failed(error),
        };
        self.observed.ended(R::outcome(&output));
        Poll::Ready(output)
    }
}

impl<R> fmt::Debug for CallFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallFuture")
            .field("method", &self.observed.method())
            .finish_non_exhaustive()
    }
}

/// How a method's reply is decoded into the value its call resolves to.
///
/// Implemented by [`Plain`], [`Fallible`] and [`Raw`] only.
pub trait Returns: sealed::Sealed + 'static {
    /// What awaiting the call gives.
    type Output: Send + 'static;

    /// Decodes a reply body.
    #[doc(hidden)]
    fn decode(method: &'static str, body: &[u8]) -> Self::Output;

    /// The output of a call that failed before a reply arrived.
    #[doc(hidden)]
    fn failed(error: RpcError) -> Self::Output;

    /// How the call ended, for its metrics and span.
    #[doc(hidden)]
    fn outcome(output: &Self::Output) -> Outcome;
}

/// A call made with [`Client::call_raw`]: it resolves to
/// `Result<RawReply, RpcError>`, the reply's value still encoded.
#[derive(Debug)]
pub struct Raw(());

/// The reply to a [`Client::call_raw`] call: the method's value or its
/// application error, each one MessagePack value as PROTOCOL.md §3 encodes
/// it. A fault is [`RpcError::Fault`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawReply {
    /// What the method returned (`{"ok": value}`).
    Ok(Vec<u8>),
    /// The method's own error (`{"err": value}`), for a method returning
    /// `Result<T, E>`.
    Err(Vec<u8>),
}

/// A method that returns a plain `T`: its calls resolve to
/// `Result<T, RpcError>`.
#[derive(Debug)]
pub struct Plain<T>(PhantomData<fn() -> T>);

/// A method that returns `Result<T, E>`: its calls resolve to
/// `Result<T, CallError<E>>`.
#[derive(Debug)]
pub struct Fallible<T, E>(PhantomData<fn() -> (T, E)>);

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Raw {}
    impl<T> Sealed for super::Plain<T> {}
    impl<T, E> Sealed for super::Fallible<T, E> {}
}

fn decode_error(method: &'static str, message: String) -> RpcError {
    RpcError::Decode { method, message }
}

impl Returns for Raw {
    type Output = Result<RawReply, RpcError>;

    fn decode(method: &'static str, body: &[u8]) -> Self::Output {
        let exact = |value: &[u8]| match value_len(value) {
            Some(len) if len == value.len() => Ok(value.to_vec()),
            _ => Err(decode_error(
                method,
                "the reply's value is not one complete MessagePack value".to_owned(),
            )),
        };
        match Reply::parse(body).map_err(|message| decode_error(method, message))? {
            Reply::Ok(value) => exact(value).map(RawReply::Ok),
            Reply::Err(value) => exact(value).map(RawReply::Err),
            Reply::Fault(fault) => Err(RpcError::Fault { method, fault }),
        }
    }

    fn failed(error: RpcError) -> Self::Output {
        Err(error)
    }

    fn outcome(output: &Self::Output) -> Outcome {
        match output {
            Ok(RawReply::Ok(_)) => Outcome::Ok,
            Ok(RawReply::Err(_)) => Outcome::Error,
            Err(error) => Outcome::of(error),
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Returns for Plain<T> {
    type Output = Result<T, RpcError>;

    fn decode(method: &'static str, body: &[u8]) -> Self::Output {
        match Reply::parse(body).map_err(|message| decode_error(method, message))? {
            Reply::Ok(value) => {
                decode_value(value).map_err(|message| decode_error(method, message))
            }
            Reply::Err(_) => Err(decode_error(
                method,
                "the server replied with an application error, but the method returns no `Result`"
                    .to_owned(),
            )),
            Reply::Fault(fault) => Err(RpcError::Fault { method, fault }),
        }
    }

    fn failed(error: RpcError) -> Self::Output {
        Err(error)
    }

    fn outcome(output: &Self::Output) -> Outcome {
        match output {
            Ok(_) => Outcome::Ok,
            Err(error) => Outcome::of(error),
        }
    }
}

impl<T, E> Returns for Fallible<T, E>
where
    T: DeserializeOwned + Send + 'static,
    E: DeserializeOwned + Send + 'static,
{
    type Output = Result<T, CallError<E>>;

    fn decode(method: &'static str, body: &[u8]) -> Self::Output {
        let reply = Reply::parse(body).map_err(|message| decode_error(method, message))?;
        match reply {
            Reply::Ok(value) => {
                decode_value(value).map_err(|message| CallError::Rpc(decode_error(method, message)))
            }
            Reply::Err(value) => match decode_value(value) {
                Ok(error) => Err(CallError::App(error)),
                Err(message) => Err(CallError::Rpc(decode_error(method, message))),
            },
            Reply::Fault(fault) => Err(CallError::Rpc(RpcError::Fault { method, fault })),
        }
    }

    fn failed(error: RpcError) -> Self::Output {
        Err(CallError::Rpc(error))
    }

    fn outcome(output: &Self::Output) -> Outcome {
        match output {
            Ok(_) => Outcome::Ok,
            Err(CallError::App(_)) => Outcome::Error,
            Err(CallError::Rpc(error)) => Outcome::of(error),
        }
    }
}
