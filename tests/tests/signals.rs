//! `shutdown_on_signal`: SIGTERM shuts every server down gracefully (the
//! calls in flight get their replies); a second SIGTERM stops at once (what
//! still runs goes back to the broker).
//!
//! Alone in its binary: it sends SIGTERM to its own process. The handlers
//! are installed by the first poll of `shutdown_on_signal`, which the tests
//! make before signalling, so that the signal never meets the default action
//! (ending the process).

use rpc_tests::{
    LabControl, PATIENCE, TestQueue, connect, lab_client, raw::Raw, serve_lab, within,
};
use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    task::Poll,
};

fn sigterm_to_self() {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// Polls `future` once, so that it installs its signal handlers.
async fn start(mut future: Pin<&mut impl Future>) {
    std::future::poll_fn(|cx| {
        assert!(future.as_mut().poll(cx).is_pending(), "waits for a signal");
        Poll::Ready(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_every_server_down_gracefully_then_a_second_stops_at_once() {
    let connection = connect("signals").await;
    let (first_queue, second_queue) = (TestQueue::new("signals-a"), TestQueue::new("signals-b"));
    let control = LabControl::default();
    let first = serve_lab(&connection, &first_queue, "a", &control, 4).await;
    let second = serve_lab(&connection, &second_queue, "b", &control, 4).await;
    let (_, to_first) = lab_client(&connection, &first_queue).await;
    let (_, to_second) = lab_client(&connection, &second_queue).await;
    let raw = Raw::open().await.expect("raw");

    // A call in flight on each server.
    let held_first = tokio::spawn(to_first.hold(1).into_future());
    let held_second = tokio::spawn(to_second.hold(2).into_future());
    let mut started = vec![control.next_started().await, control.next_started().await];
    started.sort_unstable();
    assert_eq!(started, [1, 2]);

    let shutdown = rpc_runtime::shutdown_on_signal([first, second]);
    tokio::pin!(shutdown);
    start(shutdown.as_mut()).await;
    sigterm_to_self();

    // Both stop taking requests...
    let stopped = async {
        raw.wait_consumers(&first_queue.name, 0).await;
        raw.wait_consumers(&second_queue.name, 0).await;
    };
    tokio::select! {
        () = stopped => {}
        _ = &mut shutdown => panic!("the shutdown ended before the calls in flight"),
    }
    // ... and finish what they run: both callers get their replies.
    control.release(2);
    within(PATIENCE, "the graceful shutdown", &mut shutdown)
        .await
        .expect("signal handlers");
    for held in [held_first, held_second] {
        let (_, redelivered) = within(PATIENCE, "a call in flight", held)
            .await
            .expect("task")
            .expect("answered during the shutdown");
        assert!(!redelivered);
    }

    // A second signal while a call still runs: stopped at once, the
    // request back in its queue once the connection closes.
    let connection = connect("signals-again").await;
    let control = LabControl::default();
    let server = serve_lab(&connection, &first_queue, "c", &control, 4).await;
    let (client, to_server) = lab_client(&connect("signals-client").await, &first_queue).await;
    let held = tokio::spawn(to_server.hold(3).into_future());
    assert_eq!(control.next_started().await, 3);
    let shutdown = rpc_runtime::shutdown_on_signal([server]);
    tokio::pin!(shutdown);
    start(shutdown.as_mut()).await;
    sigterm_to_self();
    tokio::select! {
        () = raw.wait_consumers(&first_queue.name, 0) => {}
        _ = &mut shutdown => panic!("the first signal shuts down gracefully"),
    }
    sigterm_to_self();
    within(
        PATIENCE,
        "the shutdown, after a second signal",
        &mut shutdown,
    )
    .await
    .expect("signal handlers");
    assert!(
        !held.is_finished(),
        "the held call was abandoned, not answered"
    );
    connection.close().await;
    within(PATIENCE, "the request back in its queue", async {
        while raw.message_count(&first_queue.name).await.expect("count") != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    held.abort();
    assert!(matches!(
        held.await,
        Err(error) if error.is_cancelled()
    ));
    assert_eq!(client.pending_calls(), 0);
}
