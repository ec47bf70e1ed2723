//! Streams of calls that keep coming while a test breaks something
//! ([`CallStream`]), and what they saw ([`Tally`]).

use crate::{
    guards::{PATIENCE, within},
    lab::LabClient,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::sync::Notify;

/// What a stream of calls saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Calls answered with their own reply.
    pub ok: u64,
    /// Calls answered with another call's reply: must stay 0.
    pub mismatched: u64,
    /// Calls that failed with `ConnectionLost`, with when they failed.
    pub connection_lost: Vec<std::time::Instant>,
    /// Calls that failed with `NotConnected`.
    pub not_connected: u64,
    /// Calls that failed with `Timeout`.
    pub timeouts: u64,
    /// Calls that failed with `QueueUnavailable` (the request queue's node
    /// is down).
    pub queue_unavailable: u64,
    /// Calls that failed otherwise, described.
    pub other: Vec<String>,
    /// When each successful call completed.
    pub successes: Vec<std::time::Instant>,
    /// The longest call, however it ended.
    pub longest: Duration,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.mismatched += other.mismatched;
        self.connection_lost.extend(other.connection_lost);
        self.not_connected += other.not_connected;
        self.timeouts += other.timeouts;
        self.queue_unavailable += other.queue_unavailable;
        self.other.extend(other.other);
        self.successes.extend(other.successes);
        self.longest = self.longest.max(other.longest);
    }

    /// Calls made in all.
    pub fn calls(&self) -> u64 {
        self.ok
            + self.mismatched
            + self.connection_lost.len() as u64
            + self.not_connected
            + self.timeouts
            + self.queue_unavailable
            + self.other.len() as u64
    }

    /// The first success after `instant`.
    pub fn first_success_after(&self, instant: std::time::Instant) -> Option<std::time::Instant> {
        self.successes
            .iter()
            .copied()
            .filter(|t| *t > instant)
            .min()
    }
}

/// Callers making `echo` calls in a loop, each with a token of its own (no
/// other call's, in any stream) that the reply must carry back, until
/// stopped.
#[derive(Debug)]
pub struct CallStream {
    stopped: Arc<std::sync::atomic::AtomicBool>,
    ok: Arc<AtomicUsize>,
    progress: Arc<Notify>,
    workers: Vec<tokio::task::JoinHandle<Tally>>,
}

impl CallStream {
    /// Starts `workers` callers on `lab`.
    pub fn start(lab: &LabClient, workers: usize) -> Self {
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let progress = Arc::new(Notify::new());
        // Texts unique across streams too (see `LabControl::echo_reruns`).
        let stream = uuid::Uuid::new_v4().simple().to_string();
        let workers = (0..workers)
            .map(|worker| {
                let lab = lab.clone();
                let stopped = stopped.clone();
                let ok = ok.clone();
                let progress = progress.clone();
                let stream = stream[..12].to_owned();
                tokio::spawn(async move {
                    let mut tally = Tally::default();
                    let mut call = 0u64;
                    while !stopped.load(Ordering::SeqCst) {
                        call += 1;
                        let token = format!("{stream}.{worker}.{call}");
                        let started = std::time::Instant::now();
                        let result = lab.echo(token.clone()).await;
                        tally.longest = tally.longest.max(started.elapsed());
                        match result {
                            Ok(reply) if reply == token => {
                                tally.ok += 1;
                                tally.successes.push(std::time::Instant::now());
                                ok.fetch_add(1, Ordering::SeqCst);
                                progress.notify_waiters();
                            }
                            Ok(_) => tally.mismatched += 1,
                            Err(rpc_runtime::RpcError::ConnectionLost { .. }) => {
                                tally.connection_lost.push(std::time::Instant::now());
                            }
                            Err(rpc_runtime::RpcError::NotConnected { .. }) => {
                                tally.not_connected += 1
                            }
                            Err(rpc_runtime::RpcError::Timeout { .. }) => tally.timeouts += 1,
                            Err(rpc_runtime::RpcError::QueueUnavailable { .. }) => {
                                tally.queue_unavailable += 1
                            }
                            Err(other) => tally.other.push(other.to_string()),
                        }
                    }
                    tally
                })
            })
            .collect();
        Self {
            stopped,
            ok,
            progress,
            workers,
        }
    }

    /// Calls answered so far.
    pub fn successes(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits until `count` more calls have succeeded (from now).
    pub async fn wait_successes(&self, count: usize) {
        let target = self.ok.load(Ordering::SeqCst) + count;
        within(Duration::from_secs(60), "calls to succeed", async {
            loop {
                let notified = self.progress.notified();
                if self.ok.load(Ordering::SeqCst) >= target {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    /// Stops the callers after their current call and sums what they saw.
    pub async fn finish(self) -> Tally {
        self.stopped.store(true, Ordering::SeqCst);
        let mut total = Tally::default();
        for worker in self.workers {
            total.merge(
                within(PATIENCE, "callers to stop", worker)
                    .await
                    .expect("caller task"),
            );
        }
        total
    }
}
