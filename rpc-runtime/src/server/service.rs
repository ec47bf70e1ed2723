//! What a server serves: the dispatcher that `#[rpc_service]` generates, and
//! the context a request runs in.

use crate::{protocol::fault::Fault, transport::properties::IncomingProperties};
use std::{future::Future, sync::Arc};

/// A dispatcher from requests to the methods of one service.
///
/// `#[rpc_service]` implements it for the generated `FooServer<S>` wrapper of
/// any `S: Foo`; serve it with [`Server`](crate::Server).
pub trait Service: Send + Sync + 'static {
    /// The name of the service trait, for logs.
    const NAME: &'static str;

    /// The request queue the service is served on unless configured
    /// otherwise (see `docs/PROTOCOL.md` for how it is derived).
    const DEFAULT_QUEUE: &'static str;

    /// Runs `method` on the MessagePack-encoded `args` and returns the encoded
    /// reply body (`{"ok": ..}` or `{"err": ..}`), or the fault that prevented
    /// running it.
    fn dispatch<'a>(
        &'a self,
        method: &'a str,
        args: &'a [u8],
    ) -> impl Future<Output = Result<Vec<u8>, Fault>> + Send + 'a;
}

/// Facts about the request a handler is running for.
///
/// Available from within a service method through [`RequestContext::current`],
/// and in the tasks it spawns when carried there with
/// [`RequestContext::scope`]; cloning it is cheap (the request's properties
/// are shared, not copied).
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
///         let redelivered = RequestContext::current().is_some_and(|request| request.redelivered());
///         if redelivered {
///             // This request may have run before: check before crediting twice.
///         }
///         true
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request's properties, shared with the server (no copies).
    pub(crate) properties: Arc<IncomingProperties>,
    pub(crate) redelivered: bool,
}

tokio::task_local! {
    static CURRENT: RequestContext;
}

impl RequestContext {
    /// The context of the request the current task is handling, or `None`
    /// outside a service method run by a [`Server`](crate::Server).
    pub fn current() -> Option<RequestContext> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// The method called.
    pub fn method(&self) -> &str {
        self.properties.view().method.unwrap_or_default()
    }

    /// The request's correlation id (`None` for one-way requests that carry
    /// none).
    pub fn correlation_id(&self) -> Option<&str> {
        self.properties.view().correlation_id
    }

    /// Whether the broker delivered this request before, to this or another
    /// server that did not acknowledge it (it crashed, or lost its
    /// connection). The method may already have run for it: handlers must be
    /// idempotent, and can use this flag to check.
    pub fn redelivered(&self) -> bool {
        self.redelivered
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
