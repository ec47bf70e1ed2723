//! `rpc bench`: a closed-loop load generator, as ghz is for gRPC.
//!
//! N calls are kept in flight (a new one is sent as each ends) over one
//! client (one channel, one reply consumer, as an application's client),
//! until the number of calls or the duration is reached. One driver task
//! per worker thread holds its share of the calls; the request body is
//! converted once; each driver records its latencies in a histogram of its
//! own and counts its outcomes; a progress bar (on a terminal) reads a
//! shared counter ten times a second. Nothing is shared per call but the
//! client and that counter.

use crate::{CallArgs, failure::Failure, service::Target};
use clap::Args;
use futures_util::{StreamExt, stream::FuturesUnordered};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rpc_runtime::{Metadata, RawReply};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(flatten)]
    pub(crate) call: CallArgs,
    /// How many calls are in flight at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    in_flight: u32,
    /// How many calls to make (default: 10000, unless `--duration`).
    #[arg(long, conflicts_with = "duration")]
    calls: Option<u64>,
    /// How long to make calls, as `10s`, `1m`.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Prints the report as JSON.
    #[arg(long)]
    json: bool,
    /// Sends W3C trace context with every call, as `rpc call` and the
    /// framework's clients do by default (off: a load test is not traced,
    /// and the header costs about 5% of calls/s).
    #[arg(long)]
    pub(crate) trace_context: bool,
    /// Calls made first and left out of the report.
    #[arg(long, default_value_t = 1000)]
    warm_up: u64,
    /// Tokio worker threads (one leaves the other cores to the broker and
    /// the server when they share the machine).
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
}

/// When the load stops.
#[derive(Debug, Clone, Copy)]
enum Until {
    Calls(u64),
    Deadline(Instant),
}

/// What one task saw.
struct Tally {
    latencies: Histogram<u64>,
    outcomes: BTreeMap<&'static str, u64>,
}

/// What one driver task needs to make calls.
#[derive(Clone)]
struct Load {
    client: rpc_runtime::Client,
    queue: String,
    service: String,
    method: String,
    body: Vec<u8>,
    metadata: Metadata,
    until: Until,
    /// Calls taken, all drivers together.
    done: Arc<AtomicU64>,
}

impl Load {
    /// Takes the next call, if the load is not over.
    fn take(&self) -> bool {
        match self.until {
            // Taken before made, so that no more than `calls` are made.
            Until::Calls(calls) => self.done.fetch_add(1, Ordering::Relaxed) < calls,
            Until::Deadline(deadline) => {
                let going = Instant::now() < deadline;
                if going {
                    self.done.fetch_add(1, Ordering::Relaxed);
                }
                going
            }
        }
    }

    /// One call: how it ended, and how long it took.
    async fn call(&self) -> (&'static str, Duration) {
        let mut call =
            self.client
                .call_raw(&self.queue, &self.service, &self.method, self.body.clone());
        for (name, value) in self.metadata.iter() {
            call = call.header(name, value);
        }
        let sent = Instant::now();
        let outcome = match call.await {
            Ok(RawReply::Ok(_)) => "ok",
            Ok(RawReply::Err(_)) => "error",
            Err(error) => error.kind(),
        };
        (outcome, sent.elapsed())
    }

    /// Keeps `share` calls in flight until the load is over.
    async fn drive(self, share: usize, latencies: Histogram<u64>) -> Tally {
        let mut tally = Tally {
            latencies,
            outcomes: BTreeMap::new(),
        };
        let mut in_flight = FuturesUnordered::new();
        for _ in 0..share {
            if self.take() {
                in_flight.push(self.call());
            }
        }
        while let Some((outcome, took)) = in_flight.next().await {
            let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            tally.latencies.saturating_record(micros.max(1));
            *tally.outcomes.entry(outcome).or_default() += 1;
            if self.take() {
                in_flight.push(self.call());
            }
        }
        tally
    }
}

/// The report, as `--json` prints it.
#[derive(Debug, Serialize)]
struct Report {
    queue: String,
    method: String,
    in_flight: u32,
    calls: u64,
    ok: u64,
    seconds: f64,
    calls_per_second: f64,
    /// Latencies of every call that ended (failed ones too), milliseconds.
    latency_ms: Latency,
    /// Calls that did not return a value, by kind: `error` (the method's
    /// own), and `RpcError::kind` for the others (`fault`, `timeout`, ...).
    errors: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

pub(crate) async fn run(
    target: &Target,
    args: &BenchArgs,
    body: Vec<u8>,
    metadata: Metadata,
) -> Result<u8, Failure> {
    // Microseconds, up to an hour, three significant digits.
    let empty = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|error| Failure::Usage(error.to_string()))?;
    let load = |until, done: Arc<AtomicU64>| Load {
        client: target.client.clone(),
        queue: target.queue.clone(),
        service: target.service().to_owned(),
        method: args.call.method.clone(),
        body: body.clone(),
        metadata: metadata.clone(),
        until,
        done,
    };
    if args.warm_up > 0 {
        // Not reported: the first calls fill the pipeline and warm caches,
        // as the project's benchmark does before each measurement.
        let warm = load(Until::Calls(args.warm_up), Arc::default());
        let _ = drive_all(&warm, args, &empty).await?;
    }
    let started = Instant::now();
    let until = match (args.calls, args.duration) {
        (_, Some(duration)) => match started.checked_add(duration) {
            Some(deadline) => Until::Deadline(deadline),
            // Longer than the clock can count: until interrupted.
            None => Until::Calls(u64::MAX),
        },
        (Some(calls), None) => Until::Calls(calls),
        (None, None) => Until::Calls(10_000),
    };
    let progress = progress_bar(until, args);
    let done = Arc::new(AtomicU64::new(0));
    let ticker = progress.clone().map(|bar| {
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                // Drivers take one more ticket each than they make calls.
                bar.set_position(
                    done.load(Ordering::Relaxed)
                        .min(bar.length().unwrap_or(u64::MAX)),
                );
            }
        })
    });
    let (latencies, mut outcomes) = drive_all(&load(until, done), args, &empty).await?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let calls: u64 = outcomes.values().sum();
    let ok = outcomes.remove("ok").unwrap_or(0);
    let ms = |micros: u64| micros as f64 / 1000.0;
    let report = Report {
        queue: target.queue.clone(),
        method: args.call.method.clone(),
        in_flight: args.in_flight,
        calls,
        ok,
        seconds,
        calls_per_second: calls as f64 / seconds.max(f64::EPSILON),
        latency_ms: Latency {
            p50: ms(latencies.value_at_quantile(0.50)),
            p90: ms(latencies.value_at_quantile(0.90)),
            p99: ms(latencies.value_at_quantile(0.99)),
            max: ms(latencies.max()),
        },
        errors: outcomes,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print!("{}", text(&report));
    }
    Ok(0)
}

/// Runs `load` with `--in-flight` calls in flight until it is over; the
/// latencies and outcomes of every call.
///
/// One driver task per worker, each keeping its share of the calls in
/// flight in a `FuturesUnordered`: replies arrive from lapin's I/O thread,
/// and a burst of them wakes a driver once, not a task per call (measured:
/// 64 tasks of one call each made 7% fewer calls/s).
async fn drive_all(
    load: &Load,
    args: &BenchArgs,
    empty: &Histogram<u64>,
) -> Result<(Histogram<u64>, BTreeMap<&'static str, u64>), Failure> {
    let in_flight = args.in_flight as usize;
    let drivers = args.workers.clamp(1, in_flight);
    let tasks: Vec<_> = (0..drivers)
        .map(|driver| {
            let share = in_flight / drivers + usize::from(driver < in_flight % drivers);
            tokio::spawn(load.clone().drive(share, empty.clone()))
        })
        .collect();
    let mut latencies = empty.clone();
    let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
    for task in tasks {
        let tally = task
            .await
            .map_err(|error| Failure::Usage(format!("a load task failed: {error}")))?;
        let _ = latencies.add(&tally.latencies);
        for (outcome, count) in tally.outcomes {
            *outcomes.entry(outcome).or_default() += count;
        }
    }
    Ok((latencies, outcomes))
}

/// A bar on a terminal: of calls made out of the total, or of seconds.
fn progress_bar(until: Until, args: &BenchArgs) -> Option<ProgressBar> {
    if args.json {
        return None;
    }
    let bar = match until {
        Until::Calls(calls) => ProgressBar::new(calls).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} calls, {per_sec}, {elapsed}")
                .ok()?,
        ),
        // Counts calls; the bar shows time passing.
        Until::Deadline(_) => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {pos} calls, {per_sec}, {elapsed}").ok()?,
        ),
    };
    // Drawn on stderr, only when it is a terminal.
    if bar.is_hidden() {
        return None;
    }
    if matches!(until, Until::Deadline(_)) {
        bar.enable_steady_tick(Duration::from_millis(100));
    }
    Some(bar)
}

fn text(report: &Report) -> String {
    let mut out = format!(
        "{} calls to `{}` on `{}`, {} in flight, in {:.2} s\n\
         \n  calls/s   {:.0}\n  ok        {}\n\
         \nlatency (ms)\n  p50  {:>9.3}\n  p90  {:>9.3}\n  p99  {:>9.3}\n  max  {:>9.3}\n",
        report.calls,
        report.method,
        report.queue,
        report.in_flight,
        report.seconds,
        report.calls_per_second,
        report.ok,
        report.latency_ms.p50,
        report.latency_ms.p90,
        report.latency_ms.p99,
        report.latency_ms.max,
    );
    if !report.errors.is_empty() {
        out.push_str("\nerrors\n");
        for (kind, count) in &report.errors {
            out.push_str(&format!("  {kind:<16} {count}\n"));
        }
    }
    out
}
