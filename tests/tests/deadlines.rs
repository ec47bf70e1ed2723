//! Deadlines: a request carries its caller's deadline; a server never
//! starts a request whose deadline has passed (prefetched ones included),
//! settles it without running or replying, and counts it; a handler sees
//! its deadline and the time left.
//!
//! Alone in its binary: it installs the process's global metrics recorder.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use rpc_runtime::{Client, Connection, RpcError, Server, rpc_service};
use rpc_tests::{LabFixture, PATIENCE, TestQueue, amqp_url, raw::Raw, within};
use std::{
    future::IntoFuture,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

/// A service whose `block` stops its server's whole runtime until told.
#[rpc_service]
pub trait Busy {
    /// Blocks the server's thread until the test releases it.
    async fn block(&self);
    /// Counts a run.
    async fn work(&self, n: u32) -> u32;
}

struct Blocking {
    /// Told when `block` starts.
    started: mpsc::SyncSender<()>,
    /// Waited on by `block`.
    release: Arc<std::sync::Mutex<mpsc::Receiver<()>>>,
    runs: Arc<AtomicUsize>,
}

impl Busy for Blocking {
    async fn block(&self) {
        let _ = self.started.send(());
        // Blocks the thread, and with it the server's single-threaded
        // runtime: deliveries wait, unread, behind it.
        let _ = self.release.lock().expect("lock").recv();
    }

    async fn work(&self, n: u32) -> u32 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        n
    }
}

const CALLS: usize = 20;

#[test]
fn prefetched_requests_past_their_deadline_never_run() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");
    let queue = TestQueue::new("deadlines");

    // The server, alone on a single-threaded runtime of its own thread.
    let (started_tx, started) = mpsc::sync_channel(1);
    let (release, release_rx) = mpsc::channel();
    let (serving_tx, serving) = mpsc::channel();
    let runs = Arc::new(AtomicUsize::new(0));
    let service = Blocking {
        started: started_tx,
        release: Arc::new(std::sync::Mutex::new(release_rx)),
        runs: runs.clone(),
    };
    let queue_name = queue.name.clone();
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let server_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let connection = Connection::connect(&amqp_url()).await.expect("connect");
            let server = Server::builder()
                .queue(&queue_name)
                .prefetch(100)
                .serve(&connection, BusyServer::new(service))
                .await
                .expect("serve");
            serving_tx.send(()).expect("the test waits");
            let _ = stop.await;
            server.shutdown().await;
            connection.close().await;
        });
    });
    serving.recv_timeout(PATIENCE).expect("the server serves");

    let client_runtime = tokio::runtime::Runtime::new().expect("runtime");
    let raw = client_runtime.block_on(async {
        let connection = Connection::connect(&amqp_url()).await.expect("connect");
        let busy = BusyClient::new(Client::new(&connection).await.expect("client"))
            .with_queue(&queue.name);
        busy.block().one_way().await.expect("sent");
        tokio::task::spawn_blocking(move || started.recv_timeout(PATIENCE))
            .await
            .expect("task")
            .expect("block started");

        // Requests the server receives (prefetch 100) but cannot start
        // before their callers give up.
        let calls: Vec<_> = (0..CALLS as u32)
            .map(|n| {
                tokio::spawn(
                    busy.work(n)
                        .timeout(Duration::from_millis(500))
                        .into_future(),
                )
            })
            .collect();
        for call in calls {
            let result = within(PATIENCE, "a call", call).await.expect("task");
            assert!(
                matches!(result, Err(RpcError::Timeout { .. })),
                "{result:?}"
            );
        }
        // They all left the queue for the blocked server (none is ready).
        let raw = Raw::open().await.expect("raw");
        assert_eq!(raw.message_count(&queue.name).await.expect("count"), 0);

        // The server resumes: every request it now reads is past its
        // deadline. A call with time to spare still runs, after them.
        release.send(()).expect("the server waits");
        assert_eq!(busy.work(7).await.expect("work"), 7);
        connection.close().await;
        raw
    });
    // Once the server has shut down (its handlers all done), nothing came
    // back to the queue: every skipped request was settled, none ran.
    let _ = stop_tx.send(());
    server_thread.join().expect("server thread");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the last call ran");
    client_runtime.block_on(async {
        assert_eq!(raw.message_count(&queue.name).await.expect("count"), 0);
    });

    let skipped: u64 = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(key, ..)| key.key().name() == "rpc_server_deadline_skipped_total")
        .filter(|(key, ..)| key.key().labels().any(|label| label.value() == "work"))
        .map(|(.., value)| match value {
            DebugValue::Counter(count) => count,
            other => panic!("not a counter: {other:?}"),
        })
        .sum();
    assert_eq!(skipped, CALLS as u64);
}

#[test]
fn handlers_see_their_deadline_and_the_time_left() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let fixture = LabFixture::start("deadline-context").await;
        let report = fixture
            .lab
            .context()
            .timeout(Duration::from_secs(20))
            .await
            .expect("context");
        let left = report.time_left_ms.expect("a call carries its deadline");
        assert!(left > 0 && left <= 20_000, "{left} ms left");
        fixture.shutdown().await;
    });
}
