//! Why a command failed, and the exit status that says so.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the method returned its own error (printed as JSON on stdout) |
//! | 2 | the command is wrong: its options, an unknown method, arguments that do not match the method |
//! | 3 | the server could not run the method: a fault (its kind and message) |
//! | 4 | the call did not complete: no such service, no server, a timeout, the connection |
//! | 101 | `rpc` itself failed: it could not start, or a bug (as a Rust panic exits) |

use crate::convert::Mismatch;
use rpc_runtime::{ConnectError, RpcError};

/// The method returned its own error.
pub(crate) const EXIT_APP_ERROR: u8 = 1;
/// The command is wrong (clap's own usage errors use it too).
pub(crate) const EXIT_USAGE: u8 = 2;
/// A fault.
pub(crate) const EXIT_FAULT: u8 = 3;
/// The call did not complete.
pub(crate) const EXIT_TRANSPORT: u8 = 4;
/// `rpc` itself failed.
pub(crate) const EXIT_INTERNAL: u8 = 101;

/// The exit statuses, as `rpc --help` lists them.
pub(crate) const EXIT_STATUSES: &str = "\
Exit status:
  0  success
  1  the method returned its own error (printed as JSON on stdout)
  2  the command is wrong: options, an unknown method, arguments that do not match
  3  the server could not run the method: a fault
  4  the call did not complete: no such service, no server, timeout, connection
  101  rpc itself failed: it could not start, or a bug";

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// The command line is wrong in a way clap cannot see.
    #[error("{0}")]
    Usage(String),

    /// The service has no such method.
    #[error(
        "the service `{service}` on queue `{queue}` has no method `{method}`; it has: {}",
        known.join(", ")
    )]
    UnknownMethod {
        service: String,
        queue: String,
        method: String,
        known: Vec<String>,
    },

    /// An argument is not JSON.
    #[error(
        "argument {position} (`{name}`) is not JSON: {message} (strings go in quotes: \
         '\"text\"'; a string argument, or an enum's unit variant, may also be written bare)"
    )]
    NotJson {
        position: usize,
        name: String,
        message: String,
    },

    /// An argument is not JSON, and the service does not describe itself:
    /// nothing says the argument is a string, so no bare word is taken.
    #[error(
        "argument {position} is not JSON: {message} (the service does not describe itself, so \
         nothing says which arguments are strings: every argument must be JSON, a string in \
         quotes: '\"text\"')"
    )]
    NotJsonUndescribed { position: usize, message: String },

    /// An argument does not fit its type.
    #[error("argument {position} (`{name}: {written}`): {mismatch}")]
    BadArgument {
        position: usize,
        name: String,
        written: String,
        mismatch: Box<Mismatch>,
    },

    /// Too many or too few arguments.
    #[error("`{method}` takes {signature}, but {given} were given")]
    ArgumentCount {
        method: String,
        signature: String,
        given: usize,
    },

    /// The server does not answer `rpc.describe`.
    #[error(
        "the service on queue `{queue}` does not describe itself: its server was built before \
         introspection, or turned it off (`ServerBuilder::introspection(false)`); `rpc call` \
         still works, with arguments sent as plain JSON, unchecked"
    )]
    NotDescribed { queue: String },

    /// The server could not run the method.
    #[error("{0}")]
    Fault(RpcError),

    /// The call did not complete.
    #[error("{0}")]
    Rpc(RpcError),

    /// No connection to the broker.
    #[error("{0}")]
    Connect(#[from] ConnectError),
}

impl From<RpcError> for Failure {
    fn from(error: RpcError) -> Self {
        if error.fault().is_some() {
            Failure::Fault(error)
        } else {
            Failure::Rpc(error)
        }
    }
}

impl Failure {
    /// The process's exit status.
    pub(crate) fn exit_status(&self) -> u8 {
        match self {
            Failure::Usage(_)
            | Failure::UnknownMethod { .. }
            | Failure::NotJson { .. }
            | Failure::NotJsonUndescribed { .. }
            | Failure::BadArgument { .. }
            | Failure::ArgumentCount { .. }
            // Names and a URL that cannot be sent are the command's.
            | Failure::Rpc(
                RpcError::InvalidQueueName { .. }
                | RpcError::InvalidMethodName { .. }
                | RpcError::InvalidHeader { .. },
            )
            | Failure::Connect(ConnectError::InvalidUrl { .. }) => EXIT_USAGE,
            Failure::NotDescribed { .. } | Failure::Fault(_) => EXIT_FAULT,
            Failure::Rpc(_) | Failure::Connect(_) => EXIT_TRANSPORT,
        }
    }

    /// What to try next, where the message's own advice is for Rust code.
    pub(crate) fn hint(&self) -> Option<&'static str> {
        match self {
            Failure::Rpc(error) => match error.kind() {
                "timeout" => {
                    Some("give the call longer with `--timeout` (for example `--timeout 2m`)")
                }
                "not_connected" | "connection_lost" => {
                    Some("check the broker address (`--url` or `AMQP_URL`)")
                }
                "no_server" => Some(
                    "start a server for the queue: `rpc` asks before every command whether one \
                     consumes it, and does not leave requests waiting",
                ),
                _ => None,
            },
            Failure::Connect(_) => Some("set the broker address with `--url` or `AMQP_URL`"),
            _ => None,
        }
    }
}
