//! Load: many calls at 256 in flight through one client and two server
//! processes. Zero calls lost, zero mismatched (every reply checked against
//! its own request), the pending table empty at the end, and the client's
//! resident memory flat after warm-up.
//!
//! This test is alone in its binary so that the process's memory is the
//! client's. `RPC_LOAD_CALLS` sets the number of calls (default 30,000, the
//! bounded run CI makes; docs/RELIABILITY.md records a 200,000-call run:
//! `RPC_LOAD_CALLS=200000 cargo test --release -p rpc-tests --test load -- --nocapture`).

use futures_util::{StreamExt, stream};
use rpc_tests::{LabServerProcess, TestQueue, amqp_url, connect, lab_client};
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

const IN_FLIGHT: usize = 256;

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_through_one_client_and_two_servers_lose_nothing() {
    let calls: u64 = std::env::var("RPC_LOAD_CALLS")
        .ok()
        .and_then(|calls| calls.parse().ok())
        .unwrap_or(30_000);
    let queue = TestQueue::new("load");
    let binary = env!("CARGO_BIN_EXE_lab_server");
    let _first = LabServerProcess::start(binary, &amqp_url(), &queue.name, "a", 128).await;
    let _second = LabServerProcess::start(binary, &amqp_url(), &queue.name, "b", 128).await;
    let connection = connect("load-client").await;
    let (client, lab) = lab_client(&connection, &queue).await;

    let ok = AtomicU64::new(0);
    let lost = AtomicU64::new(0);
    let mismatched = AtomicU64::new(0);
    // (calls done, RSS) at each tenth of the run.
    let samples = std::sync::Mutex::new(Vec::new());
    let started = Instant::now();
    stream::iter(0..calls)
        .for_each_concurrent(IN_FLIGHT, |i| {
            let (lab, ok, lost, mismatched, samples) = (&lab, &ok, &lost, &mismatched, &samples);
            async move {
                let token = format!("call-{i}");
                match lab.echo(token.clone()).await {
                    Ok(reply) if reply == token => {
                        let done = ok.fetch_add(1, Ordering::Relaxed) + 1;
                        if done % (calls / 10).max(1) == 0 {
                            samples.lock().expect("lock").push((done, rss_kib()));
                        }
                    }
                    Ok(_) => {
                        mismatched.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        eprintln!("call {i} failed: {error}");
                        lost.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
        .await;
    let elapsed = started.elapsed();
    let samples = samples.into_inner().expect("lock");
    let (ok, lost, mismatched) = (ok.into_inner(), lost.into_inner(), mismatched.into_inner());
    // Warm-up: the first fifth of the run.
    let warm = samples.get(1).map_or(0, |sample| sample.1);
    let end = samples.last().map_or(0, |sample| sample.1);
    eprintln!(
        "RELIABILITY load: calls={calls} in_flight={IN_FLIGHT} ok={ok} lost={lost} \
         mismatched={mismatched} pending_after={} elapsed={elapsed:?} calls_per_s={:.0} \
         rss_kib_after_warmup={warm} rss_kib_end={end} rss_samples={samples:?}",
        client.pending_calls(),
        calls as f64 / elapsed.as_secs_f64(),
    );
    assert_eq!(lost, 0, "calls lost");
    assert_eq!(mismatched, 0, "calls answered with another call's reply");
    assert_eq!(ok, calls);
    assert_eq!(client.pending_calls(), 0);
    // Flat after warm-up: growth over the last four fifths of the calls stays
    // below what a leak of 50 bytes per call would add (at least 1 MiB, for
    // allocator noise; seen: about 0.2 MiB).
    let after_warmup = calls * 4 / 5;
    let allowed_kib = (after_warmup * 50 / 1024).max(1024);
    assert!(
        end <= warm + allowed_kib,
        "resident memory grew from {warm} KiB after warm-up to {end} KiB: {samples:?}"
    );
}
