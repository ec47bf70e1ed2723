//! What a server serves: the dispatcher that `#[rpc_service]` generates.

use crate::protocol::{describe::ServiceDescription, fault::Fault, reply::ReplyBody};
use std::future::Future;

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

    /// The names of its methods, as requests name them (metrics are kept per
    /// method, and a name not in this list is counted as `unknown`).
    const METHODS: &'static [&'static str];

    /// What the service says of itself when asked (`rpc.describe`);
    /// `#[rpc_service]` generates it. `None`: nothing to say, and such
    /// requests get `unknown_method`.
    fn description() -> Option<ServiceDescription> {
        None
    }

    /// Runs `method` on the MessagePack-encoded `args` and returns the encoded
    /// reply body (`{"ok": ..}` or `{"err": ..}`), or the fault that prevented
    /// running it.
    fn dispatch<'a>(
        &'a self,
        method: &'a str,
        args: &'a [u8],
    ) -> impl Future<Output = Result<ReplyBody, Fault>> + Send + 'a;
}
