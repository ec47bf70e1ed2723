//! One call, as a generated client method returns it: configure it, then
//! `.await` it.

use super::{Client, engine::CallSpec};
use crate::{
    error::{CallError, RpcError},
    protocol::{
        args::ArgsEncodeError,
        reply::{Reply, decode_value},
    },
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
#[must_use = "a call does nothing until it is awaited"]
pub struct Call<R> {
    client: Client,
    queue: Arc<str>,
    method: &'static str,
    args: Result<Vec<u8>, ArgsEncodeError>,
    timeout: Option<Duration>,
    require_server: Option<bool>,
    returns: PhantomData<fn() -> R>,
}

impl<R> Call<R> {
    /// Used by generated clients.
    #[doc(hidden)]
    pub fn new(
        client: &Client,
        queue: &Arc<str>,
        method: &'static str,
        args: Result<Vec<u8>, ArgsEncodeError>,
    ) -> Self {
        Self {
            client: client.clone(),
            queue: queue.clone(),
            method,
            args,
            timeout: None,
            require_server: None,
            returns: PhantomData,
        }
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
    /// sends no reply. Resolves once the broker has taken the request (it
    /// fails with [`RpcError::NoSuchService`] if no queue takes it).
    pub async fn one_way(self) -> Result<(), RpcError> {
        let body = self.args.map_err(|error| RpcError::Encode {
            method: self.method,
            message: error.to_string(),
        })?;
        self.client
            .engine
            .send_one_way(CallSpec {
                queue: self.queue,
                method: self.method,
                body: Arc::new(body),
                timeout: self.timeout,
                require_server: self.require_server,
            })
            .await
    }
}

impl<R> fmt::Debug for Call<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("queue", &self.queue)
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<R: Returns> IntoFuture for Call<R> {
    type Output = R::Output;
    type IntoFuture = CallFuture<R>;

    fn into_future(self) -> CallFuture<R> {
        let method = self.method;
        let reply: Replying = match self.args {
            // The client's call future is boxed as it is made and only the
            // box moves; decoding, the one part that depends on `R`, happens
            // in `CallFuture::poll`, outside it.
            Ok(body) => Box::pin(self.client.engine.call(CallSpec {
                queue: self.queue,
                method,
                body: Arc::new(body),
                timeout: self.timeout,
                require_server: self.require_server,
            })),
            Err(error) => Box::pin(std::future::ready(Err(RpcError::Encode {
                method,
                message: error.to_string(),
            }))),
        };
        CallFuture {
            method,
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
    method: &'static str,
    reply: Replying,
    returns: PhantomData<fn() -> R>,
}

impl<R: Returns> Future for CallFuture<R> {
    type Output = R::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<R::Output> {
        Poll::Ready(match std::task::ready!(self.reply.as_mut().poll(cx)) {
            Ok(reply) => R::decode(self.method, &reply),
            Err(error) => R::failed(error),
        })
    }
}

impl<R> fmt::Debug for CallFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallFuture")
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

/// How a method's reply is decoded into the value its call resolves to.
///
/// Implemented by [`Plain`] and [`Fallible`] only.
pub trait Returns: sealed::Sealed + 'static {
    /// What awaiting the call gives.
    type Output: Send + 'static;

    /// Decodes a reply body.
    #[doc(hidden)]
    fn decode(method: &'static str, body: &[u8]) -> Self::Output;

    /// The output of a call that failed before a reply arrived.
    #[doc(hidden)]
    fn failed(error: RpcError) -> Self::Output;
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
    impl<T> Sealed for super::Plain<T> {}
    impl<T, E> Sealed for super::Fallible<T, E> {}
}

fn decode_error(method: &'static str, message: String) -> RpcError {
    RpcError::Decode { method, message }
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
}
