//! Timeouts and graceful shutdowns while calls keep coming.

use futures_util::future::join_all;
use rpc_runtime::RpcError;
use rpc_tests::{
    CallStream, LabControl, LabFixture, PATIENCE, TestQueue, connect, lab_client, raw::Raw,
    serve_lab, within,
};
use std::{future::IntoFuture, sync::atomic::Ordering, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_timing_out_under_load_leave_nothing_behind_and_expired_requests_never_run() {
    // One request at a time, each taking a second: every call below times
    // out, and all but the first expire in the queue.
    let fixture = LabFixture::builder("timeouts")
        .server_name("slow")
        .prefetch(1)
        .start()
        .await;
    let LabFixture {
        queue,
        control,
        server,
        client,
        lab,
        ..
    } = &fixture;

    let calls = (0..200).map(|_| {
        lab.nap(1000)
            .timeout(Duration::from_millis(50))
            .into_future()
    });
    let results = within(PATIENCE, "200 calls timing out", join_all(calls)).await;
    for result in results {
        match result {
            Err(RpcError::Timeout {
                method: "nap",
                timeout,
                ..
            }) => {
                assert_eq!(timeout, Duration::from_millis(50));
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
    }
    assert_eq!(client.pending_calls(), 0);

    // The one delivered request finishes (its late reply is dropped); the
    // broker drops the expired ones as they reach the head of the queue.
    let raw = Raw::open().await.expect("raw connection");
    within(PATIENCE, "the queue to drain", async {
        while raw.message_count(&queue.name).await.expect("count") > 0 || server.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(
        control.handled.load(Ordering::SeqCst),
        1,
        "only the request delivered before its expiration ran"
    );
    assert_eq!(lab.echo("alive".into()).await.expect("echo"), "alive");
    assert_eq!(client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_graceful_restarts_lose_no_call() {
    let queue = TestQueue::new("rolling");
    let control = LabControl::default();
    let mut first = serve_lab(&connect("rolling-a").await, &queue, "a", &control, 4).await;
    let mut second = serve_lab(&connect("rolling-b").await, &queue, "b", &control, 4).await;
    let connection = connect("rolling-client").await;
    let (client, lab) = lab_client(&connection, &queue).await;

    let stream = CallStream::start(&lab, 16);
    stream.wait_successes(300).await;
    // Restart each server in turn, gracefully, while the calls keep coming.
    for round in 0..2 {
        first.shutdown().await;
        stream.wait_successes(200).await;
        first = serve_lab(
            &connect("rolling-a").await,
            &queue,
            &format!("a{round}"),
            &control,
            4,
        )
        .await;
        second.shutdown().await;
        stream.wait_successes(200).await;
        second = serve_lab(
            &connect("rolling-b").await,
            &queue,
            &format!("b{round}"),
            &control,
            4,
        )
        .await;
        stream.wait_successes(200).await;
    }
    let tally = stream.finish().await;
    eprintln!(
        "RELIABILITY rolling-restarts: calls={} ok={} mismatched={} failed={}",
        tally.calls(),
        tally.ok,
        tally.mismatched,
        tally.calls() - tally.ok - tally.mismatched
    );
    assert_eq!(tally.ok, tally.calls(), "every call succeeded: {tally:?}");
    assert_eq!(client.pending_calls(), 0);
    first.shutdown().await;
    second.shutdown().await;
}
