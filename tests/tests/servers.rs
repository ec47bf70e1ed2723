//! Several servers on one queue, graceful shutdown, and how requests are
//! acknowledged.

use futures_util::future::join_all;
use rpc_runtime::{FaultKind, RpcError};
use rpc_tests::{
    LabControl, LabFixture, PATIENCE, TestQueue, connect, lab_client, lab_server, raw::Raw,
    relay::Relay, serve_lab, within,
};
use std::{collections::HashSet, future::IntoFuture, sync::atomic::Ordering, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_queue_both_take_work() {
    let queue = TestQueue::new("two-servers");
    let control = LabControl::default();
    // Separate connections, as separate processes would have.
    let first = serve_lab(&connect("two-servers-a").await, &queue, "a", &control, 1).await;
    let second = serve_lab(&connect("two-servers-b").await, &queue, "b", &control, 1).await;
    let connection = connect("two-servers-client").await;
    let (client, lab) = lab_client(&connection, &queue).await;

    // With a prefetch of 1 each, two calls held at once must be on different
    // servers: both servers take work, at the same time.
    let calls: Vec<_> = (0..2)
        .map(|tag| tokio::spawn(lab.hold(tag).into_future()))
        .collect();
    let mut started = HashSet::new();
    started.insert(control.next_started().await);
    started.insert(control.next_started().await);
    assert_eq!(started, HashSet::from([0, 1]));
    control.release(2);
    let names: HashSet<String> = within(PATIENCE, "held calls", join_all(calls))
        .await
        .into_iter()
        .map(|result| result.expect("task").expect("call").0)
        .collect();
    assert_eq!(names, HashSet::from(["a".to_owned(), "b".to_owned()]));

    // Many short calls spread over both.
    let names: HashSet<String> = join_all((0..200).map(|_| lab.whoami().into_future()))
        .await
        .into_iter()
        .map(|name| name.expect("whoami"))
        .collect();
    assert_eq!(names.len(), 2, "both servers answered: {names:?}");
    assert_eq!(client.pending_calls(), 0);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_the_calls_in_flight() {
    let queue = TestQueue::new("shutdown");
    let control = LabControl::default();
    let stopping = serve_lab(
        &connect("shutdown-a").await,
        &queue,
        "stopping",
        &control,
        4,
    )
    .await;
    let connection = connect("shutdown-client").await;
    let (client, lab) = lab_client(&connection, &queue).await;

    let in_flight: Vec<_> = (0..3)
        .map(|tag| tokio::spawn(lab.hold(tag).into_future()))
        .collect();
    for _ in 0..3 {
        control.next_started().await;
    }
    assert_eq!(stopping.in_flight(), 3);
    let shutdown = tokio::spawn(stopping.shutdown());
    let raw = Raw::open().await.expect("raw connection");
    raw.wait_consumers(&queue.name, 0).await;

    // While it drains, new requests are left to other servers.
    let other = LabControl::default();
    let taking_over = serve_lab(
        &connect("shutdown-b").await,
        &queue,
        "taking-over",
        &other,
        4,
    )
    .await;
    assert_eq!(
        within(PATIENCE, "a call during shutdown", lab.whoami())
            .await
            .expect("whoami"),
        "taking-over"
    );
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the calls in flight"
    );

    control.release(3);
    for call in within(PATIENCE, "calls in flight", join_all(in_flight)).await {
        let (name, redelivered) = call.expect("task").expect("in-flight call answered");
        assert_eq!(name, "stopping");
        assert!(!redelivered);
    }
    within(PATIENCE, "shutdown", shutdown)
        .await
        .expect("shutdown task");
    assert_eq!(client.pending_calls(), 0);
    taking_over.shutdown().await;
}

/// A shutdown waits for its handlers only while they can still reply: once
/// the connection is lost, the broker redelivers their requests, and a
/// handler left running would run beside its request's second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_during_shutdown_ends_its_handlers() {
    let queue = TestQueue::new("shutdown-lost");
    let relay = Relay::start().await;
    let control = LabControl::default();
    let stopping = rpc_runtime::Server::builder()
        .queue(&queue.name)
        // Far longer than the test: only the lost connection ends the wait.
        .shutdown_grace(Duration::from_secs(3600))
        .serve(&relay.connect().await, lab_server("stopping", &control))
        .await
        .expect("serve");
    let connection = connect("shutdown-lost-client").await;
    let (client, lab) = lab_client(&connection, &queue).await;
    let call = tokio::spawn(lab.hold(1).into_future());
    assert_eq!(control.next_started().await, 1);
    let shutdown = tokio::spawn(stopping.shutdown());
    let raw = Raw::open().await.expect("raw connection");
    raw.wait_consumers(&queue.name, 0).await;

    relay.cut();
    within(PATIENCE, "the shutdown, its handler aborted", shutdown)
        .await
        .expect("shutdown task");
    let taking_over = serve_lab(
        &connect("shutdown-lost-b").await,
        &queue,
        "taking-over",
        &control,
        4,
    )
    .await;
    assert_eq!(
        control.next_started().await,
        1,
        "the request is redelivered"
    );
    control.release(1);
    let (name, redelivered) = within(PATIENCE, "the call", call)
        .await
        .expect("task")
        .expect("answered");
    assert_eq!((name.as_str(), redelivered), ("taking-over", true));
    assert_eq!(
        control.handled.load(Ordering::SeqCst),
        1,
        "the first run never finished"
    );
    assert_eq!(client.pending_calls(), 0);
    taking_over.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_runs_up_to_its_prefetch_at_once() {
    let fixture = LabFixture::builder("prefetch").prefetch(3).start().await;
    let LabFixture {
        queue,
        control,
        server,
        client,
        lab,
        ..
    } = &fixture;

    let calls: Vec<_> = (0..5)
        .map(|tag| tokio::spawn(lab.hold(tag).into_future()))
        .collect();
    for _ in 0..3 {
        control.next_started().await;
    }
    // The other two wait in the queue, not in the server.
    let raw = Raw::open().await.expect("raw connection");
    within(PATIENCE, "two requests left in the queue", async {
        while raw.message_count(&queue.name).await.expect("count") != 2 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(server.in_flight(), 3);

    control.release(5);
    for call in within(PATIENCE, "all calls", join_all(calls)).await {
        call.expect("task").expect("call");
    }
    assert_eq!(client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_request_queue_works() {
    let queue = TestQueue::new("quorum");
    let connection = connect("quorum").await;
    let server = rpc_runtime::Server::builder()
        .queue(&queue.name)
        .queue_type(rpc_runtime::QueueType::Quorum)
        .serve(
            &connection,
            rpc_tests::lab_server("q", &LabControl::default()),
        )
        .await
        .expect("serve on a quorum queue");
    let (_, lab) = lab_client(&connection, &queue).await;
    assert_eq!(lab.add(1, 1).await.expect("add"), 2);
    server.shutdown().await;

    // Serving the same name as a classic queue is refused with a clear error.
    let refused = rpc_runtime::Server::builder()
        .queue(&queue.name)
        .serve(
            &connection,
            rpc_tests::lab_server("c", &LabControl::default()),
        )
        .await
        .expect_err("a queue of another type");
    assert!(
        matches!(&refused, rpc_runtime::ServeError::Setup { queue: name, .. } if *name == queue.name),
        "{refused:?}"
    );
    assert!(
        refused.to_string().contains("PRECONDITION_FAILED"),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("by a RabbitMQ policy"),
        "the advice for a queue in use: {refused}"
    );

    // A queue exclusive to another connection is told as such.
    let exclusive = TestQueue::new("exclusive");
    let raw = Raw::open().await.expect("raw connection");
    raw.channel
        .queue_declare(
            exclusive.name.as_str().into(),
            rpc_runtime::lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            rpc_runtime::lapin::types::FieldTable::default(),
        )
        .await
        .expect("declare an exclusive queue");
    let refused = rpc_runtime::Server::builder()
        .queue(&exclusive.name)
        .serve(
            &connection,
            rpc_tests::lab_server("x", &LabControl::default()),
        )
        .await
        .expect_err("an exclusive queue");
    assert!(
        refused
            .to_string()
            .contains("exclusive to another connection"),
        "{refused}"
    );

    // `amq.` names are the broker's, refused before asking it.
    let refused = rpc_runtime::Server::builder()
        .queue(&queue.name)
        .queue_type(rpc_runtime::QueueType::Quorum)
        .dead_letter_queue(format!("amq.{}", queue.name))
        .serve(
            &connection,
            rpc_tests::lab_server("d", &LabControl::default()),
        )
        .await
        .expect_err("a reserved dead-letter queue name");
    assert!(
        matches!(&refused, rpc_runtime::ServeError::InvalidQueueName { queue } if queue.starts_with("amq.")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_never_holds_back_the_acknowledgements_behind_it() {
    // Two requests at a time: with the first one held, each later request
    // is delivered only once the one before it is acknowledged.
    let fixture = LabFixture::builder("held-acks").prefetch(2).start().await;
    let LabFixture {
        control,
        client,
        lab,
        ..
    } = &fixture;

    let held = tokio::spawn(lab.hold(0).into_future());
    control.next_started().await;
    let echoes = (0..100).map(|i| lab.echo(i.to_string()).into_future());
    let echoed = within(PATIENCE, "calls behind a held one", join_all(echoes)).await;
    for (i, text) in echoed.into_iter().enumerate() {
        assert_eq!(text.expect("echo"), i.to_string());
    }
    control.release(1);
    within(PATIENCE, "the held call", held)
        .await
        .expect("task")
        .expect("held call");
    assert_eq!(client.pending_calls(), 0);
    shut_down_with_each_request_settled_once(fixture, 101).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_rejected_among_acknowledged_ones_are_each_settled_once() {
    let fixture = LabFixture::builder("mixed-settlements")
        .prefetch(16)
        .start()
        .await;
    let LabFixture { client, lab, .. } = &fixture;

    // Every eighth call panics: its request is rejected, between requests
    // acknowledged (in batches) on the same channel.
    let calls = (0..200).map(|i| {
        let lab = &lab;
        async move {
            if i % 8 == 3 {
                match lab.explode("rejected".into()).await {
                    Err(RpcError::Fault { fault, .. }) => {
                        assert_eq!(fault.kind(), &FaultKind::HandlerPanicked);
                    }
                    other => panic!("expected a fault, got {other:?}"),
                }
            } else {
                assert_eq!(lab.add(i, 1).await.expect("add"), i + 1);
            }
        }
    });
    within(PATIENCE, "200 calls", join_all(calls)).await;
    assert_eq!(client.pending_calls(), 0);
    // A settlement the broker refused would have closed the channel and had
    // its requests delivered again.
    shut_down_with_each_request_settled_once(fixture, 200).await;
}

/// Shuts the fixture's server down and checks that each of the `requests`
/// it received was settled once: closing its channel gives every
/// unacknowledged request back to the queue, where none is, and none ran
/// twice.
async fn shut_down_with_each_request_settled_once(fixture: LabFixture, requests: usize) {
    let LabFixture {
        server,
        queue,
        control,
        ..
    } = fixture;
    server.shutdown().await;
    let raw = Raw::open().await.expect("raw connection");
    assert_eq!(raw.message_count(&queue.name).await.expect("count"), 0);
    assert_eq!(control.handled.load(Ordering::SeqCst), requests);
}

/// A shutdown without grace stops waiting for the consumer's cancel at
/// once; that must cost neither the connection nor the next server on it
/// (on amqprs an operation dropped half-way once panicked the channel's
/// task, and a cancel finished later, behind the channel's close, made the
/// broker close the connection: 504).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_shut_down_without_grace_never_cost_their_connection() {
    let queue = TestQueue::new("no-grace");
    let connection = connect("no-grace").await;
    let control = LabControl::default();
    let (_client, lab) = lab_client(&connection, &queue).await;
    for n in 0..40 {
        let server = rpc_runtime::Server::builder()
            .queue(&queue.name)
            .shutdown_grace(std::time::Duration::ZERO)
            .serve(&connection, rpc_tests::lab_server("s", &control))
            .await
            .expect("serve");
        assert_eq!(
            within(PATIENCE, "a call", lab.add(n, 1))
                .await
                .expect("add"),
            n + 1
        );
        within(PATIENCE, "a shutdown", server.shutdown()).await;
    }
    assert_eq!(connection.reconnections(), 0, "the connection was lost");
}
