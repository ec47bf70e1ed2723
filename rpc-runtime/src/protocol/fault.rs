//! Faults (PROTOCOL.md §5): why a server could not run a method, as it
//! tells the caller in a `fault` reply, and the kinds of fault on the wire.

use std::fmt;

/// Why the framework could not run a method on the server, as reported back
/// to the caller in a `fault` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    kind: FaultKind,
    message: String,
    /// What the server logs instead of `message` when `message` may quote
    /// the request's body.
    log_message: Option<String>,
}

impl Fault {
    /// A fault of the given kind, with a human-readable explanation.
    ///
    /// ```
    /// use rpc_runtime::{Fault, FaultKind};
    /// let fault = Fault::new(FaultKind::BadRequest, "expected 1 argument(s), got 2".into());
    /// assert_eq!(fault.to_string(), "bad_request: expected 1 argument(s), got 2");
    /// ```
    pub fn new(kind: FaultKind, message: String) -> Self {
        Self {
            kind,
            message,
            log_message: None,
        }
    }

    /// The same fault, logged by the server as `log_message` rather than
    /// its message, which may quote the request's body (values never go
    /// into logs).
    pub(crate) fn with_log_message(mut self, log_message: String) -> Self {
        self.log_message = Some(log_message);
        self
    }

    /// What the server logs of this fault: its kind and a message that
    /// quotes nothing of the request's body.
    pub(crate) fn for_log(&self) -> impl fmt::Display + '_ {
        struct ForLog<'a>(&'a Fault);
        impl fmt::Display for ForLog<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let message = self.0.log_message.as_deref().unwrap_or(&self.0.message);
                write!(f, "{}: {message}", self.0.kind)
            }
        }
        ForLog(self)
    }

    /// The fault for a request whose `type` names no method of the service.
    pub fn unknown_method(method: &str) -> Self {
        Self::new(
            FaultKind::UnknownMethod,
            format!("the service has no method `{method}`"),
        )
    }

    /// What went wrong, as a machine-readable kind.
    pub fn kind(&self) -> &FaultKind {
        &self.kind
    }

    /// What went wrong, for humans.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Fault {}

/// The kinds of [`Fault`], as they appear on the wire (`docs/PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// `unknown_method`: the request's `type` names no method of the service,
    /// or the request has no `type`.
    UnknownMethod,
    /// `bad_request`: the body is not the method's arguments (invalid
    /// MessagePack, wrong count, wrong types, out-of-range integers, empty).
    BadRequest,
    /// `handler_panicked`: the method, or a server interceptor before it,
    /// panicked; the server keeps serving.
    HandlerPanicked,
    /// `unsupported_content_type`: the request's `content_type` is not
    /// MessagePack, or it has a `content_encoding`.
    UnsupportedContentType,
    /// `request_too_large`: the body is larger than the server accepts.
    RequestTooLarge,
    /// `internal`: the server failed for another reason, for example it could
    /// not encode the method's result.
    Internal,
    /// `unauthenticated`: a server's interceptor found no valid credentials
    /// in the request (its metadata, its `user_id`).
    Unauthenticated,
    /// `permission_denied`: a server's interceptor knows the caller, who may
    /// not call this method.
    PermissionDenied,
    /// A kind this version of the framework does not know, from a newer peer.
    Other(String),
}

impl FaultKind {
    /// The kind as written on the wire.
    ///
    /// ```
    /// assert_eq!(rpc_runtime::FaultKind::BadRequest.as_str(), "bad_request");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            FaultKind::UnknownMethod => "unknown_method",
            FaultKind::BadRequest => "bad_request",
            FaultKind::HandlerPanicked => "handler_panicked",
            FaultKind::UnsupportedContentType => "unsupported_content_type",
            FaultKind::RequestTooLarge => "request_too_large",
            FaultKind::Internal => "internal",
            FaultKind::Unauthenticated => "unauthenticated",
            FaultKind::PermissionDenied => "permission_denied",
            FaultKind::Other(kind) => kind,
        }
    }

    pub(crate) fn from_wire(kind: &str) -> Self {
        match kind {
            "unknown_method" => FaultKind::UnknownMethod,
            "bad_request" => FaultKind::BadRequest,
            "handler_panicked" => FaultKind::HandlerPanicked,
            "unsupported_content_type" => FaultKind::UnsupportedContentType,
            "request_too_large" => FaultKind::RequestTooLarge,
            "internal" => FaultKind::Internal,
            "unauthenticated" => FaultKind::Unauthenticated,
            "permission_denied" => FaultKind::PermissionDenied,
            other => FaultKind::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
