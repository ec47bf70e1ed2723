//! Client interceptors: code that sees every call before its request is
//! sent, to add metadata (an auth token, say) or refuse it, as tonic's
//! interceptors do.

use crate::metadata::Metadata;
use std::{fmt, sync::Arc};

/// What an interceptor refuses a call with: any error; its message becomes
/// the call's [`RpcError::Intercepted`](crate::RpcError::Intercepted).
pub type InterceptError = Box<dyn std::error::Error + Send + Sync>;

/// A client interceptor, as the client keeps it.
pub(crate) type ClientInterceptor =
    Arc<dyn Fn(&mut OutgoingCall<'_>) -> Result<(), InterceptError> + Send + Sync>;

/// A call about to be sent, as a client's interceptors see it.
pub struct OutgoingCall<'a> {
    pub(crate) service: &'static str,
    pub(crate) method: &'static str,
    pub(crate) queue: &'a str,
    pub(crate) metadata: &'a mut Metadata,
}

impl OutgoingCall<'_> {
    /// The service's name (the trait's).
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The method called.
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The request queue the call goes to.
    pub fn queue(&self) -> &str {
        self.queue
    }

    /// The call's metadata, to read or to add to.
    pub fn metadata(&mut self) -> &mut Metadata {
        self.metadata
    }
}

impl fmt::Debug for OutgoingCall<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingCall")
            .field("service", &self.service)
            .field("method", &self.method)
            .field("queue", &self.queue)
            .field("metadata", &self.metadata)
            .finish()
    }
}
