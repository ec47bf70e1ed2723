//! The context a request runs in: what a handler knows of its request, and
//! how it carries that into the work it hands off.

use crate::{
    metadata::Metadata,
    protocol::headers::{self, HeaderValue},
    trace::{SpanId, TraceId, TraceIds},
    transport::properties::IncomingProperties,
};
use std::{
    any::{Any, TypeId},
    collections::HashMap,
    fmt,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime},
};

/// Facts about the request a handler is running for: its method,
/// correlation id, metadata, deadline, caller identity, trace, and span.
///
/// Available from within a service method through [`RequestContext::current`],
/// and in the tasks it spawns when carried there with
/// [`RequestContext::scope`]; cloning it is cheap (the request's properties
/// are shared, not copied). A server's interceptors see it before the method
/// runs, and may attach extensions to it
/// ([`ServerBuilder::interceptor`](crate::ServerBuilder::interceptor)).
///
/// ```
/// # use rpc_runtime::{rpc_service, RequestContext};
/// #[rpc_service]
/// pub trait Ledger {
///     async fn credit(&self, account: u64, cents: u64) -> bool;
/// }
///
/// struct Books;
///
/// impl Ledger for Books {
///     async fn credit(&self, account: u64, cents: u64) -> bool {
///         let Some(request) = RequestContext::current() else { return false };
///         if request.redelivered() {
///             // This request may have run before: check before crediting twice.
///         }
///         let tenant = request.header("tenant").unwrap_or("default");
///         let caller = request.user_id().unwrap_or("anonymous");
///         tracing::info!(%tenant, %caller, account, cents, "credit");
///         true
///     }
/// }
/// ```
#[derive(Clone)]
pub struct RequestContext {
    inner: Arc<Inner>,
    extensions: Extensions,
}

struct Inner {
    /// The request's properties, shared with the server (no copies).
    properties: Arc<IncomingProperties>,
    redelivered: bool,
    deadline: Option<SystemTime>,
    trace: TraceIds,
    span: tracing::Span,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

impl RequestContext {
    pub(crate) fn new(
        properties: Arc<IncomingProperties>,
        redelivered: bool,
        trace: TraceIds,
        span: tracing::Span,
    ) -> Self {
        let deadline = match properties.header(headers::DEADLINE) {
            Some(HeaderValue::Integer(millis)) => Some(headers::deadline_from_millis(millis)),
            _ => None,
        };
        Self {
            inner: Arc::new(Inner {
                properties,
                redelivered,
                deadline,
                trace,
                span,
            }),
            extensions: Extensions::default(),
        }
    }

    /// The context of the request the current task is handling, or `None`
    /// outside a service method run by a [`Server`](crate::Server) (and
    /// outside what it carried the context into).
    pub fn current() -> Option<RequestContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The trace of the current request, without cloning its context.
    pub(crate) fn current_trace() -> Option<TraceIds> {
        CURRENT.try_with(|request| request.inner.trace.clone()).ok()
    }

    /// The method called.
    pub fn method(&self) -> &str {
        self.inner.properties.view().method.unwrap_or_default()
    }

    /// The request's correlation id (`None` for one-way requests that carry
    /// none).
    pub fn correlation_id(&self) -> Option<&str> {
        self.inner.properties.view().correlation_id
    }

    /// Whether the broker delivered this request before, to this or another
    /// server that did not acknowledge it (it crashed, or lost its
    /// connection). The method may already have run for it: handlers must be
    /// idempotent, and can use this flag to check.
    pub fn redelivered(&self) -> bool {
        self.inner.redelivered
    }

    /// The value of call metadata header `name` (set by the caller with
    /// [`Call::header`](crate::Call::header) or
    /// [`ClientBuilder::metadata`](crate::ClientBuilder::metadata)), if the
    /// request carries it as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.inner.properties.header(name)? {
            HeaderValue::Text(value) if headers::check_name(name).is_ok() => Some(value),
            _ => None,
        }
    }

    /// Every call metadata header of the request (the protocol's own
    /// headers, such as `traceparent`, are not metadata).
    pub fn metadata(&self) -> Metadata {
        let mut metadata = Metadata::new();
        for (name, value) in self.inner.properties.headers() {
            if let HeaderValue::Text(value) = value
                && headers::check_name(name).is_ok()
            {
                metadata.push_received(name.to_owned(), value.to_owned());
            }
        }
        metadata
    }

    /// When the caller gives up on this request, if it said (its
    /// `rpc-deadline` header). The server does not start a request past its
    /// deadline; a handler can use it to bound its own work.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.inner.deadline
    }

    /// How long until the caller gives up: `None` without a deadline, zero
    /// once it has passed.
    pub fn time_left(&self) -> Option<Duration> {
        let deadline = self.inner.deadline?;
        Some(
            deadline
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }

    /// The caller's identity: the `user_id` property, which RabbitMQ checks
    /// against the user of the connection that published the request (so a
    /// caller cannot claim another user's, unless that user has the
    /// `impersonator` tag). `None` if the request carries none.
    pub fn user_id(&self) -> Option<&str> {
        self.inner.properties.view().user_id
    }

    /// The trace this request belongs to, as 32 hexadecimal digits.
    pub fn trace_id(&self) -> String {
        TraceId(self.inner.trace.trace_id).to_string()
    }

    /// The id of this request's span in its trace (the parent of the calls
    /// its handler makes), as 16 hexadecimal digits.
    pub fn span_id(&self) -> String {
        SpanId(self.inner.trace.span_id).to_string()
    }

    /// The request's `tracing` span: the handler runs inside it; work the
    /// handler hands off can enter it, or `instrument` with it. Disabled
    /// when the subscriber leaves its level out (DEBUG unless
    /// [`ServerBuilder::span_level`](crate::ServerBuilder::span_level) says
    /// otherwise).
    pub fn span(&self) -> &tracing::Span {
        &self.inner.span
    }

    /// The extension of type `T` an interceptor attached, if any.
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.extensions
            .0
            .get(&TypeId::of::<T>())
            .and_then(|value| value.downcast_ref())
    }

    /// Attaches `value`, for the handler and the interceptors after this one
    /// to read with [`RequestContext::extension`] (replacing an extension of
    /// the same type).
    pub fn insert_extension<T: Any + Send + Sync>(&mut self, value: T) {
        Arc::make_mut(&mut self.extensions.0).insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// Runs `future` with `self` as the current context, so that
    /// [`RequestContext::current`] finds it there too.
    ///
    /// The context is the handler task's own: a task the handler spawns
    /// starts without one. Take it with `current()` and carry it in:
    ///
    /// ```
    /// # use rpc_runtime::{rpc_service, RequestContext};
    /// #[rpc_service]
    /// pub trait Jobs {
    ///     async fn start(&self, job: String) -> bool;
    /// }
    ///
    /// struct Worker;
    ///
    /// impl Jobs for Worker {
    ///     async fn start(&self, job: String) -> bool {
    ///         let Some(context) = RequestContext::current() else { return false };
    ///         let work = tokio::spawn(context.scope(async move {
    ///             // The spawned task sees the request it works for.
    ///             let request = RequestContext::current().expect("carried into the task");
    ///             tracing::info!(method = request.method(), %job, "working");
    ///         }));
    ///         work.await.is_ok()
    ///     }
    /// }
    /// ```
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(self, future).await
    }

    /// Runs `f` with `self` as the current context: for blocking work, such
    /// as a closure given to `tokio::task::spawn_blocking`.
    ///
    /// ```
    /// # use rpc_runtime::RequestContext;
    /// # async fn handler() {
    /// let context = RequestContext::current();
    /// let digest = tokio::task::spawn_blocking(move || match context {
    ///     Some(context) => context.in_scope(|| RequestContext::current().is_some()),
    ///     None => false,
    /// });
    /// # }
    /// ```
    pub fn in_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("method", &self.method())
            .field("correlation_id", &self.correlation_id())
            .field("redelivered", &self.redelivered())
            .field("deadline", &self.deadline())
            .field("user_id", &self.user_id())
            .field("trace_id", &self.trace_id())
            .field("metadata", &self.metadata())
            .finish_non_exhaustive()
    }
}

/// Values interceptors attach to a request, by type; copied only when
/// changed after the context was cloned.
#[derive(Clone, Default)]
struct Extensions(Arc<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>);
