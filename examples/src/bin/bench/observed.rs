//! Peer `observed`: the framework with its observability on, as production
//! runs it, against peer `framework` with it off.
//!
//! - A `tracing` subscriber: `tracing_subscriber::fmt()` at INFO, writing to
//!   `std::io::sink()`, as an application logging at INFO: it leaves the
//!   framework's spans (`rpc.call`, `rpc.request`, at DEBUG) out. With
//!   `BENCH_SPAN_LEVEL=info` (both peers' builders' `span_level`) it records
//!   them and formats their fields; nothing is written per call either way
//!   (no span events, no events on the happy path).
//! - A metrics recorder: `rpc_examples::prometheus().build_recorder()`, as
//!   `fib_server --metrics` installs it (histograms with buckets), without
//!   an HTTP listener, its upkeep run every 5 s as `PrometheusBuilder::install`
//!   does.
//! - Trace context on (`ClientBuilder::trace_context`, the default).
//!
//! The server child installs both globally. The client shares the driver
//! process with the other peers' clients, which stay unobserved: it runs on a
//! Tokio runtime of its own whose threads have the subscriber as their
//! default, and its generated client is `ObservedBenchClient`, whose metrics
//! handles (one `static` per method) are registered against its own recorder
//! (`metrics::with_local_recorder`).
//!
//! `tracing` caches each call site's interest for the whole process. With a
//! single dispatcher registered, it asks the default of whichever thread
//! reaches the call site first: had the `framework` client made the first
//! call, the `rpc.call` span would have stayed disabled for this one too; and
//! had this one, the `framework` client would create its spans (in the no-op
//! dispatcher, ~600 instructions a call). So the client also registers a
//! dispatcher that enables nothing: with two, the span call sites are of
//! interest "sometimes", and each span asks its thread's dispatcher first
//! (a few dozen instructions on the other peers' threads).

use crate::{
    Error, Method,
    framework::FrameworkClient,
    service::{FIB_N, ObservedBenchClient, Payload},
};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};
use std::{future::IntoFuture, sync::Arc, time::Duration};
use tracing::Dispatch;

/// How often the recorders' upkeep runs (`PrometheusBuilder`'s default).
const UPKEEP: Duration = Duration::from_secs(5);

/// The subscriber both sides install.
/// Whether `part` of the observability is on: `BENCH_OBSERVE`, a list of
/// `spans`, `metrics` and `trace`, turns on only those it names (to tell
/// their costs apart); all of them without it.
pub(crate) fn part(part: &str) -> bool {
    std::env::var("BENCH_OBSERVE").map_or(true, |parts| parts.split(',').any(|on| on == part))
}

fn subscriber() -> Dispatch {
    if !part("spans") {
        return Dispatch::new(tracing::subscriber::NoSubscriber::default());
    }
    Dispatch::new(
        tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    )
}

/// Runs the recorder's upkeep (it drains the histograms' samples into their
/// summaries) every [`UPKEEP`], on the current runtime.
fn keep_up(handle: PrometheusHandle) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP).await;
            handle.run_upkeep();
        }
    });
}

/// For the server child: installs the subscriber and the recorder globally,
/// before the server starts (it registers its metrics handles as it starts).
pub(crate) fn install_globally() -> Result<PrometheusHandle, Error> {
    tracing::dispatcher::set_global_default(subscriber())?;
    let recorder = rpc_examples::prometheus().build_recorder();
    let handle = recorder.handle();
    if part("metrics") {
        metrics::set_global_recorder(recorder)?;
    }
    keep_up(handle.clone());
    Ok(handle)
}

/// The sum of the samples of counter `name` (all its label sets) in a
/// Prometheus rendering.
pub(crate) fn count(rendered: &str, name: &str) -> u64 {
    rendered
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The observed client, on its own runtime.
pub(crate) struct ObservedClient {
    runtime: Option<tokio::runtime::Runtime>,
    /// Registered while the client lives (see the module's documentation).
    _nothing: Dispatch,
    client: Option<Arc<FrameworkClient<ObservedBenchClient>>>,
    payload: Arc<Payload>,
    _recorder: Arc<PrometheusRecorder>,
    metrics: PrometheusHandle,
}

impl ObservedClient {
    /// Connects on a new runtime of `workers` worker threads, whose threads
    /// have the subscriber as their default.
    pub(crate) async fn connect(url: &str, queue: &str, workers: usize) -> Result<Self, Error> {
        let nothing = Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let dispatch = subscriber();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .thread_name("observed")
            .on_thread_start(move || {
                // For the thread's lifetime.
                std::mem::forget(tracing::dispatcher::set_default(&dispatch));
            })
            .enable_all()
            .build()?;
        let recorder = Arc::new(rpc_examples::prometheus().build_recorder());
        let metrics = recorder.handle();
        let (url, queue) = (url.to_owned(), queue.to_owned());
        let (registering, upkeep) = (recorder.clone(), metrics.clone());
        // Connected on its runtime, so that the client's tasks run there.
        let client = runtime
            .spawn(async move {
                let client =
                    FrameworkClient::<ObservedBenchClient>::connect(&url, &queue, part("trace"))
                        .await?;
                // Each method's handles are registered as its first call is
                // made (before it is polled): against this recorder.
                if part("metrics") {
                    metrics::with_local_recorder(&*registering, || {
                        drop(client.generated().fib(FIB_N).into_future());
                        drop(client.generated().echo(Payload::sample(0)).into_future());
                    });
                }
                keep_up(upkeep);
                Ok::<_, Error>(client)
            })
            .await??;
        Ok(Self {
            runtime: Some(runtime),
            _nothing: nothing,
            client: Some(Arc::new(client)),
            payload: Arc::new(Payload::sample(7)),
            _recorder: recorder,
            metrics,
        })
    }

    /// Where the client's calls run.
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("until dropped").handle()
    }

    /// The client, to call from tasks on [`Self::handle`].
    pub(crate) fn client(&self) -> Arc<FrameworkClient<ObservedBenchClient>> {
        self.client.clone().expect("until dropped")
    }

    pub(crate) fn payload(&self) -> &Arc<Payload> {
        &self.payload
    }

    /// Makes `calls` calls, `in_flight` at a time, on the client's runtime.
    pub(crate) async fn run(
        &self,
        method: Method,
        in_flight: usize,
        calls: usize,
    ) -> Result<hdrhistogram::Histogram<u64>, Error> {
        let (client, payload) = (self.client(), self.payload.clone());
        self.handle()
            .spawn(
                async move { crate::run_calls(&*client, &payload, method, in_flight, calls).await },
            )
            .await?
    }

    /// The calls its recorder counted, and whether it counted any other
    /// service's (the other peers' clients must record nothing).
    pub(crate) fn recorded(&self) -> (u64, bool) {
        let rendered = self.metrics.render();
        (
            count(&rendered, "rpc_client_calls_total"),
            rendered.lines().any(|line| {
                line.starts_with("rpc_") && !line.contains("service=\"ObservedBench\"")
            }),
        )
    }
}

impl Drop for ObservedClient {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // The client's connection is closed from its own runtime, which
            // then stops without blocking the caller's.
            let entered = runtime.enter();
            drop(self.client.take());
            drop(entered);
            runtime.shutdown_background();
        }
    }
}
