//! The errors a call, a connection or a server can end with.
//!
//! A call's error keeps two worlds apart: [`CallError::App`] is the error the
//! service method itself returned (`Err(e)` of a method declared as returning
//! `Result<T, E>`), and [`RpcError`] is everything the framework, the broker or
//! the network did. Methods that return a plain `T` fail with [`RpcError`] only.

use crate::{protocol::fault::Fault, transport::AmqpError};
use std::time::Duration;

/// Everything that can end a call except the method's own error: the broker,
/// the network, the server framework, or the local client.
///
/// Each message says what happened to the request, so that callers know
/// whether it may have run.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No reply arrived in time. The request may never have been sent (it
    /// was still waiting for room on its channel, as when the broker stops
    /// reading under a resource alarm), or may still run. A request that was
    /// sent carries an `expiration` of the time its caller had left when it
    /// was handed to the AMQP library: the broker drops it if it is still
    /// queued that long after it reached its queue, and servers skip it
    /// once its deadline (`rpc-deadline`) has passed.
    ///
    /// When the timeout fired the client asked the broker about the request
    /// queue, and the error says what it answered:
    ///
    /// - `queue_missing: true`: the queue does not exist (it was deleted, or
    ///   was never declared: no server ever started for it). The request was
    ///   dropped with it, or never queued (without publisher confirms,
    ///   requests are published without `mandatory`, so a request to a
    ///   missing queue is dropped silently), unless a server took it before
    ///   the queue was deleted. `consumers` is then `None`.
    /// - `consumers: Some(0)`: the queue exists but no server consumes it (a
    ///   server's durable queue outlives the server): the request waits in
    ///   the queue until it expires.
    /// - `consumers: Some(n)`: servers consume the queue: they were busy, or
    ///   the method was slower than the timeout.
    /// - `consumers: None` and `queue_missing: false`: the broker could not
    ///   be asked (or the timeout is zero: the call was not sent).
    #[error("{}", timeout_message(method, *timeout, queue, *consumers, *queue_missing))]
    Timeout {
        /// The method called.
        method: &'static str,
        /// The timeout that passed.
        timeout: Duration,
        /// The request queue the call was published to.
        queue: String,
        /// How many servers consumed the queue when the timeout fired, if
        /// the broker could be asked and the queue existed.
        consumers: Option<u32>,
        /// Whether the broker said, when the timeout fired, that the queue
        /// does not exist: the request was dropped, not left waiting.
        queue_missing: bool,
    },

    /// The request queue exists, but the cluster node holding it is down or
    /// unreachable (a classic queue lives on one node): the broker returned
    /// the request, which was not delivered.
    #[error(
        "queue `{queue}` is on a node that is down or unreachable; the request was not \
         delivered: retry once the node is back, or declare the queue as a quorum queue \
         (`QueueType::Quorum`), which survives the loss of a node"
    )]
    QueueUnavailable {
        /// The request queue.
        queue: String,
    },

    /// The request queue exists but no server consumes it, and the call
    /// required one (`require_server`); the request was not sent.
    #[error(
        "no server is consuming queue `{queue}`, and the call requires one; the request was not \
         sent: start a server, or call without `require_server` to let the request wait in the \
         queue for one"
    )]
    NoServer {
        /// The request queue.
        queue: String,
    },

    /// The request queue does not exist, so no server is listening: the
    /// request was not delivered. Either the broker returned it (it was
    /// published `mandatory`, with publisher confirms), or the client found
    /// the queue missing before sending it, by asking the broker (a call
    /// that requires a server, `require_server`): then nothing was sent.
    #[error(
        "no service is listening on queue `{queue}`: no queue of that name exists, and nothing \
         was delivered: start a server for it, or check the queue name"
    )]
    NoSuchService {
        /// The request queue the call was addressed to.
        queue: String,
    },

    /// The broker refused the request (a negative publisher confirm), each
    /// time it was sent until the call's timeout: for example a queue at its
    /// length limit with `overflow = reject-publish`, or a quorum queue
    /// without a majority of its nodes. (A refusal is not final at once: a
    /// quorum queue electing a leader refuses requests for a moment, so a
    /// refused request is sent again, on a new channel, with growing
    /// delays.)
    #[error(
        "the broker refused the request to `{method}` (publisher nack) each time it was sent \
         until the timeout; it was not delivered: check the queue's length limit \
         (`overflow = reject-publish`) and, for a quorum queue, that most of its nodes are up"
    )]
    Refused {
        /// The method called.
        method: &'static str,
    },

    /// The connection to the broker was lost while the call was in flight
    /// (not closed by the application: that is [`RpcError::Closed`]). The
    /// request may or may not have run.
    #[error(
        "the connection to the broker was lost while `{method}` was in flight; the request may \
         or may not have run (the client reconnects by itself: retry if the method is idempotent)"
    )]
    ConnectionLost {
        /// The method called.
        method: &'static str,
    },

    /// The client had no connection to the broker for the whole call timeout,
    /// so the request was never sent.
    #[error(
        "not connected to the broker (reconnecting) for the whole timeout of `{method}`; the \
         request was not sent: check that the broker is up and reachable"
    )]
    NotConnected {
        /// The method called.
        method: &'static str,
    },

    /// The request needed a channel of its own (one-way requests have one
    /// per connection), and the broker or the AMQP client refused to open
    /// it while the connection was up: for example the connection has as
    /// many channels as its `channel_max` allows. The request was not sent;
    /// sending it again will fail the same way until a channel is freed.
    #[error(
        "could not open a channel to send `{method}` on: {source}; the request was not sent: \
         allow the connection more channels (`channel_max` in the URL, and the broker's \
         `channel_max`), or open fewer on it"
    )]
    ChannelRefused {
        /// The method called.
        method: &'static str,
        /// What the broker or the AMQP client reported.
        source: AmqpError,
    },

    /// The server received the request but could not run the method.
    #[error("the server could not run `{method}`: {fault}")]
    Fault {
        /// The method called.
        method: &'static str,
        /// What the server reported.
        fault: Fault,
    },

    /// An argument could not be serialized; the request was not sent.
    #[error("could not encode the arguments of `{method}`: {message}")]
    Encode {
        /// The method called.
        method: &'static str,
        /// What the serializer reported.
        message: String,
    },

    /// The queue name is empty or too long for AMQP (more than 255 bytes);
    /// the request was not sent.
    #[error("`{queue}` is not a valid queue name: a request queue's name is 1 to 255 bytes")]
    InvalidQueueName {
        /// The queue name.
        queue: String,
    },

    /// The method name is longer than AMQP's `type` property holds (255
    /// bytes), as only a name given at run time can be
    /// ([`Client::call_raw`](crate::Client::call_raw)); the request was not
    /// sent.
    #[error("`{method}` is not a valid method name: a method's name is at most 255 bytes")]
    InvalidMethodName {
        /// The method name.
        method: String,
    },

    /// The request body is larger than the client's maximum request size;
    /// the request was not sent.
    #[error(
        "the request to `{method}` has {size} bytes, over the limit of {limit}: send less, or \
         raise the limit on the client and the server (`max_request_size`)"
    )]
    RequestTooLarge {
        /// The method called.
        method: &'static str,
        /// The size of the encoded arguments.
        size: usize,
        /// The client's limit.
        limit: usize,
    },

    /// The reply could not be decoded: the server probably runs a different
    /// version of the service.
    #[error(
        "could not decode the reply to `{method}`: {message} (does the server run the same \
         version of the service?)"
    )]
    Decode {
        /// The method called.
        method: &'static str,
        /// What the decoder reported.
        message: String,
    },

    /// A header attached to the call cannot be sent; the request was not
    /// sent.
    #[error("the call to `{method}` has a header that cannot be sent: {source}")]
    InvalidHeader {
        /// The method called.
        method: &'static str,
        /// What is wrong with it.
        source: crate::metadata::InvalidHeader,
    },

    /// One of the client's interceptors refused the call; the request was
    /// not sent.
    #[error("an interceptor refused the call to `{method}`: {message}")]
    Intercepted {
        /// The method called.
        method: &'static str,
        /// What the interceptor said.
        message: String,
    },

    /// The application closed the client's connection
    /// ([`Connection::close`](crate::Connection::close)): before the call, or
    /// while it was in flight (then the request may or may not have run). A
    /// closed connection does not reconnect, and no client can be created on
    /// it: connect a new [`Connection`](crate::Connection), then create a new
    /// client on it.
    #[error(
        "the application closed the client's connection (`Connection::close`); a request in \
         flight then may or may not have run, and the connection does not reconnect: connect a \
         new `Connection`, then create a new client on it"
    )]
    Closed,
}

fn timeout_message(
    method: &str,
    timeout: Duration,
    queue: &str,
    consumers: Option<u32>,
    queue_missing: bool,
) -> String {
    if timeout.is_zero() {
        return format!(
            "the call to `{method}` has a zero timeout, so it was not sent: give it a timeout \
             above zero"
        );
    }
    if queue_missing {
        return format!(
            "no reply to `{method}` within {timeout:?}: queue `{queue}` does not exist (deleted, \
             or not declared yet), so the request was dropped, unless a server took it before \
             the queue was deleted: start a server for it, or check the queue name"
        );
    }
    match consumers {
        Some(0) => format!(
            "no reply to `{method}` within {timeout:?}: no server is consuming `{queue}` (start \
             one; the request waits in the queue until it expires, or call with \
             `require_server` to fail at once)"
        ),
        Some(servers) => format!(
            "no reply to `{method}` within {timeout:?}, although {servers} server(s) consume \
             `{queue}`: the method was slower than the timeout, or the servers were busy (raise \
             the timeout with `.timeout(..)` on the call or the client)"
        ),
        None => format!(
            "no reply to `{method}` within {timeout:?} from queue `{queue}`: no server took the \
             request in time (is one running?), or it was slower than the timeout (raise it \
             with `.timeout(..)` on the call or the client)"
        ),
    }
}

impl RpcError {
    /// A short name for what kind of error this is, as the client's metrics
    /// label it (`rpc_client_calls_total`'s `outcome`): `fault`, `timeout`,
    /// `connection_lost`, `not_connected`, `no_such_service` (a missing or
    /// unavailable queue), `no_server`, `refused`, `not_sent` (refused
    /// before sending: arguments, size, queue or method name, headers, an
    /// interceptor, a channel that could not be opened), `decode_error` or
    /// `closed`. For counting errors by kind, or an exit status.
    ///
    /// ```
    /// use rpc_runtime::RpcError;
    /// assert_eq!(RpcError::Closed.kind(), "closed");
    /// ```
    pub fn kind(&self) -> &'static str {
        crate::client::observe::Outcome::of(self).as_str()
    }

    /// The fault the server reported, if this is one.
    pub fn fault(&self) -> Option<&Fault> {
        match self {
            RpcError::Fault { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

/// The error of a call to a method declared as returning `Result<T, E>`:
/// either the method's own error, or an [`RpcError`].
///
/// Both halves convert with `?`: into `anyhow::Error` when `E` is a
/// `std::error::Error`, or into your own error type with `#[from]`.
///
/// ```
/// use rpc_runtime::{CallError, RpcError};
///
/// fn describe(error: &CallError<String>) -> String {
///     match error {
///         CallError::App(message) => format!("the service said no: {message}"),
///         CallError::Rpc(RpcError::Timeout { .. }) => "too slow".to_owned(),
///         CallError::Rpc(other) => other.to_string(),
///     }
/// }
/// assert_eq!(describe(&CallError::App("n too large".into())), "the service said no: n too large");
/// ```
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError<E> {
    /// The method returned `Err(E)`.
    #[error(transparent)]
    App(E),
    /// The call failed outside the method.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

impl<E> CallError<E> {
    /// The method's own error, if it returned one.
    pub fn app(&self) -> Option<&E> {
        match self {
            CallError::App(error) => Some(error),
            CallError::Rpc(_) => None,
        }
    }

    /// The framework error, if the call failed outside the method.
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            CallError::App(_) => None,
            CallError::Rpc(error) => Some(error),
        }
    }
}

/// Why a connection to the broker could not be established or used.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The AMQP URL does not parse.
    #[error("invalid AMQP URL `{url}`: {message}")]
    InvalidUrl {
        /// The URL, with its password redacted.
        url: String,
        /// What the parser reported.
        message: String,
    },
    /// The broker could not be reached or refused the connection.
    #[error(
        "could not connect to the broker at {url}: {source} (is RabbitMQ running, is that its \
         AMQP port (`amqps://` needs its TLS port, 5671 by default; `amqp://` the plain one, \
         5672), and are the credentials right?)"
    )]
    Broker {
        /// The URL, with its password redacted.
        url: String,
        /// What the AMQP client reported.
        source: AmqpError,
    },
    /// The broker did not complete the connection in time.
    #[error(
        "the broker at {url} accepted the connection but did not complete the AMQP handshake \
         within {timeout:?} (is it overloaded, or is something else listening there?)"
    )]
    Timeout {
        /// The URL, with its password redacted.
        url: String,
        /// The connect timeout.
        timeout: Duration,
    },
    /// The broker refused to set up a channel the client or server needs.
    #[error("the broker refused to {what}: {source}")]
    Channel {
        /// What was being set up.
        what: &'static str,
        /// What the broker reported.
        source: AmqpError,
    },
    /// None of the brokers of the connection answered; each one's error, in
    /// the order they were tried.
    #[error("no broker answered: {}", list(errors))]
    NoBrokerAnswered {
        /// Each broker's error.
        errors: Vec<ConnectError>,
    },
    /// The connection was closed with [`Connection::close`](crate::Connection::close).
    #[error("the connection was closed")]
    Closed,
    /// A client or a server was being set up while the connection was
    /// reconnecting, and it did not come back within its connect timeout
    /// ([`ConnectionBuilder::connect_timeout`](crate::ConnectionBuilder::connect_timeout)).
    #[error(
        "the connection to the broker (last at {url}) is down and did not come back within \
         {waited:?}: check that the broker is up and reachable, then try again (the \
         connection keeps reconnecting by itself)"
    )]
    Reconnecting {
        /// The URL of the broker last connected to, with its password
        /// redacted.
        url: String,
        /// How long it was waited for: the connect timeout.
        waited: Duration,
    },
}

/// Why a server could not start.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The connection was closed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The queue name is empty or too long for AMQP (more than 255 bytes),
    /// begins with `amq.` (the broker's own), or names the request queue as
    /// its own dead-letter queue.
    #[error(
        "`{queue}` is not a valid queue name here: a queue's name is 1 to 255 bytes and does \
         not begin with `amq.` (the broker keeps those for itself), and a dead-letter queue is \
         not the request queue"
    )]
    InvalidQueueName {
        /// The queue name.
        queue: String,
    },
    /// The server's settings do not go together.
    #[error("{message}")]
    Config {
        /// What to change.
        message: String,
    },
    /// The broker refused to set up the request queue or its consumer, for
    /// example because a queue of that name exists with other settings; the
    /// message says what to do for each reason the broker gives.
    #[error("could not set up request queue `{queue}`: {source} ({})", setup_advice(.source))]
    Setup {
        /// The request queue.
        queue: String,
        /// What the broker reported.
        source: AmqpError,
    },
}

/// What to do when the broker refuses a server's queue, by its reply code.
fn setup_advice(source: &AmqpError) -> &'static str {
    match source.reply_code() {
        Some(406) => {
            "a queue of that name exists with other settings, which a declaration cannot \
             change: configure the server to match it (durable, queue type, delivery limit, \
             dead-letter queue), or delete it, losing the requests it holds; to give a queue in \
             use a delivery limit or dead-lettering, set them by a RabbitMQ policy and leave \
             them off the server"
        }
        Some(405) => {
            "the queue is exclusive to another connection: stop whatever declared it, or serve \
             another queue"
        }
        Some(403) => {
            "the broker's user may not declare or consume this queue: check its configure and \
             read permissions on the virtual host"
        }
        _ => "check the broker's log for the reason",
    }
}

fn list(errors: &[ConnectError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
