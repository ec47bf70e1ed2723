//! One call, as a generated client method returns it: configure it, then
//! `.await` it.

use crate::{
    client::Client,
    error::{CallError, RpcError},
    protocol::{ArgsEncodeError, Reply, decode_value},
};
use serde::de::DeserializeOwned;
use std::{
    fmt,
    future::{Future, IntoFuture},
    marker::PhantomData,
    pin::Pin,
    sync::Arc,
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
    returns: PhantomData<fn() -> R>,
}

/// What [`Client`] needs to know of one call.
pub(crate) struct CallSpec<'a> {
    pub(crate) queue: &'a str,
    pub(crate) method: &'static str,
    pub(crate) body: Arc<Vec<u8>>,
    pub(crate) timeout: Option<Duration>,
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
            returns: PhantomData,
        }
    }

    /// Waits at most `timeout` for the reply (instead of the client's
    /// default); the request's `expiration` is set to the same.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
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
            .send_one_way(CallSpec {
                queue: &self.queue,
                method: self.method,
                body: Arc::new(body),
                timeout: self.timeout,
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
    type IntoFuture = Pin<Box<dyn Future<Output = R::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let method = self.method;
            let body = match self.args {
                Ok(body) => body,
                Err(error) => {
                    return R::failed(RpcError::Encode {
                        method,
                        message: error.to_string(),
                    });
                }
            };
            let reply = self
                .client
                .call(CallSpec {
                    queue: &self.queue,
                    method,
                    body: Arc::new(body),
                    timeout: self.timeout,
                })
                .await;
            match reply {
                Ok(reply) => R::decode(method, &reply),
                Err(error) => R::failed(error),
            }
        })
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
