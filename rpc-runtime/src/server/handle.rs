//! One request, from its delivery to its settlement: checked
//! ([`admission`](super::admission)), run (the service's dispatcher, in the
//! request's [`RequestContext`], panics caught), answered and settled
//! ([`Responder`]), and logged when it could not run.

use super::{
    admission::{Admission, Rules},
    log_budget::LogBudget,
    respond::Responder,
    service::{RequestContext, Service},
};
use crate::{
    protocol::fault::{Fault, FaultKind},
    transport::{properties::IncomingProperties, server::Incoming},
};
use futures_util::FutureExt;
use std::{
    any::Any,
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};
use tracing::{error, warn};

/// What every handler of a server shares.
pub(crate) struct Handling<S> {
    pub(crate) service: S,
    pub(crate) rules: Rules,
    /// The budget of the warnings of refused requests and faults.
    pub(crate) faults: LogBudget,
}

/// Counts a request as in flight for as long as it lives.
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(crate) fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Handles one request: checks it, runs its method, and has the responder
/// publish the reply and settle the request.
///
/// A function returning an `async move` block rather than an `async fn`: the
/// latter stores its arguments twice, and the future is moved on its way to
/// the executor.
pub(crate) fn handle<S: Service>(
    handling: Arc<Handling<S>>,
    responder: Arc<Responder>,
    request: Incoming,
    in_flight: InFlight,
) -> impl Future<Output = ()> + Send + 'static {
    let Incoming {
        properties,
        body,
        redelivered,
        delivery,
    } = request;
    async move {
        let _in_flight = in_flight;
        let outcome = run(&handling, &properties, &body, redelivered).await;
        if let Some(outcome) = outcome {
            responder.respond(delivery, &properties, outcome).await;
        } else {
            responder.refuse(delivery).await;
        }
    }
}

/// Checks a request and runs its method: its outcome, or `None` if it is
/// refused without a reply.
async fn run<S: Service>(
    handling: &Handling<S>,
    properties: &Arc<IncomingProperties>,
    body: &[u8],
    redelivered: bool,
) -> Option<Result<Vec<u8>, Fault>> {
    let outcome = match handling.rules.admit(properties.view(), body.len()) {
        Admission::Refuse { reply_to } => {
            handling.log_refused(
                properties,
                &format_args!(
                    "its reply_to `{reply_to}` is not an allowed reply address (see \
                     ReplyToPolicy); rejected without a reply"
                ),
            );
            return None;
        }
        Admission::Fault(fault) => Err(fault),
        Admission::Run { method } => {
            let context = RequestContext {
                properties: properties.clone(),
                redelivered,
            };
            let run = context.scope(handling.service.dispatch(method, body));
            AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    let (fault, message) = panicked(method, panic);
                    handling.log_panic(properties, &message);
                    Err(fault)
                })
        }
    };
    if let Err(fault) = &outcome
        && fault.kind() != &FaultKind::HandlerPanicked
    {
        handling.log_refused(properties, &fault.for_log());
    }
    Some(outcome)
}

impl<S: Service> Handling<S> {
    /// Logs, once, at WARN and within the server's budget (see
    /// [`log_budget`](super::log_budget)), a request that was refused or got
    /// a fault: with its method, correlation id and reason, never its body.
    fn log_refused(&self, properties: &IncomingProperties, reason: &dyn fmt::Display) {
        let Some(suppressed) = self.faults.take() else {
            return;
        };
        let request = properties.view();
        let (method, correlation_id) = (request.method, request.correlation_id);
        let one_way = request.reply_to.is_none();
        warn!(
            service = S::NAME,
            method, correlation_id, one_way, suppressed, "a request could not run: {reason}"
        );
    }

    /// Logs a method's panic at ERROR, within the same budget.
    fn log_panic(&self, properties: &IncomingProperties, panic: &str) {
        let Some(suppressed) = self.faults.take() else {
            return;
        };
        let request = properties.view();
        let (method, correlation_id) = (request.method, request.correlation_id);
        error!(
            service = S::NAME,
            method,
            correlation_id,
            suppressed,
            panic,
            "a service method panicked; the caller gets a handler_panicked fault"
        );
    }
}

/// The fault of a method that panicked, and the panic's message (for the
/// server's log only: it may say more than a caller should see).
fn panicked(method: &str, panic: Box<dyn Any + Send>) -> (Fault, String) {
    let message = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned());
    let fault = Fault::new(
        FaultKind::HandlerPanicked,
        format!("the method `{method}` panicked; see the server's log"),
    );
    (fault, message)
}
