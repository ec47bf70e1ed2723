//! Connection loss: calls in flight fail at once, requests in flight on a
//! server are redelivered, and both sides recover by themselves.

use futures_util::future::join_all;
use rpc_runtime::{Client, ConnectError, Connection, RpcError};
use rpc_tests::{
    CLI_PATIENCE, LabClient, LabControl, LabFixture, PATIENCE, TestQueue, close_connections_named,
    connect, connection_builder, relay::Relay, serve_lab, unique, within,
};
use std::{future::IntoFuture, time::Duration};

/// Longer than any guard: a call failing by timeout fails the test.
const LONG: Duration = Duration::from_secs(300);

/// A client on `connection` whose calls wait [`LONG`] for their reply.
async fn patient_client(connection: &rpc_runtime::Connection) -> Client {
    Client::builder()
        .timeout(LONG)
        .build(connection)
        .await
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_fail_at_once_when_the_client_loses_its_connection() {
    let queue = TestQueue::new("client-loss");
    let control = LabControl::default();
    let server = serve_lab(
        &connect("client-loss-server").await,
        &queue,
        "s1",
        &control,
        8,
    )
    .await;
    let relay = Relay::start().await;
    let connection = relay.connect().await;
    let client = patient_client(&connection).await;
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);

    let calls: Vec<_> = (0..5)
        .map(|tag| tokio::spawn(lab.hold(tag).into_future()))
        .collect();
    for _ in 0..5 {
        control.next_started().await;
    }
    relay.cut();
    for call in within(PATIENCE, "calls failing after the cut", join_all(calls)).await {
        match call.expect("task") {
            Err(RpcError::ConnectionLost { method: "hold" }) => {}
            other => panic!("expected ConnectionLost, got {other:?}"),
        }
    }
    assert_eq!(client.pending_calls(), 0);
    control.release(5);

    // A call made now waits for the reconnection and succeeds.
    let echoed = within(PATIENCE, "a call after the cut", lab.echo("back".into())).await;
    assert_eq!(echoed.expect("echo after reconnection"), "back");
    assert!(connection.is_connected());
    server.shutdown().await;
}

/// However soon after the calls start the application closes the
/// connection, none of them ends as `ConnectionLost`: each is answered,
/// taken (one-way), or `Closed`. (The engine once read the end of the
/// session and the close in two steps, and a close between them made a
/// call's error `ConnectionLost`: 6 runs in 13 failed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_racing_the_calls_never_reads_as_a_lost_connection() {
    let queue = TestQueue::new("close-race");
    let control = LabControl::default();
    let server = serve_lab(
        &connect("close-race-server").await,
        &queue,
        "s1",
        &control,
        64,
    )
    .await;
    for round in 0..30u64 {
        let connection = connect("close-race-client").await;
        let lab = LabClient::new(patient_client(&connection).await).with_queue(&queue.name);
        let calls: Vec<_> = (0..20usize)
            .map(|i| {
                let lab = lab.clone();
                // Half of them large, so that some are still being written.
                let text = format!("{i}{}", "x".repeat(200_000 * (i % 2)));
                tokio::spawn(async move {
                    match i % 3 {
                        0 => lab.record(text).one_way().await,
                        _ => lab.echo(text).await.map(drop),
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_micros(200 * (round % 10))).await;
        within(PATIENCE, "closing the connection", connection.close()).await;
        for call in within(PATIENCE, "the calls to end", join_all(calls)).await {
            let ended = call.expect("task");
            assert!(
                matches!(ended, Ok(()) | Err(RpcError::Closed)),
                "round {round}: {ended:?}"
            );
        }
    }
    server.shutdown().await;
}

/// Closing the connection is the application's doing, not a loss: the
/// calls in flight then fail with `Closed` (counted as `closed`), not with
/// `ConnectionLost`, whose message says that the client reconnects by
/// itself, which a closed connection does not; so do the calls made after,
/// and their message says what to do: no client can be created on the
/// closed connection, a new connection is needed first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_as_closed_when_the_application_closes_the_connection() {
    let queue = TestQueue::new("app-close");
    let control = LabControl::default();
    let server = serve_lab(
        &connect("app-close-server").await,
        &queue,
        "s1",
        &control,
        8,
    )
    .await;
    let connection = connect("app-close-client").await;
    let client = patient_client(&connection).await;
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);

    let calls: Vec<_> = (0..3)
        .map(|tag| tokio::spawn(lab.hold(tag).into_future()))
        .collect();
    for _ in 0..3 {
        control.next_started().await;
    }
    within(PATIENCE, "closing the connection", connection.close()).await;
    for call in within(PATIENCE, "calls failing after the close", join_all(calls)).await {
        let error = call.expect("task").expect_err("the connection is closed");
        assert!(matches!(error, RpcError::Closed), "{error:?}");
        assert_eq!(error.kind(), "closed");
        assert!(
            !error.to_string().contains("reconnects by itself"),
            "{error}"
        );
    }
    assert_eq!(client.pending_calls(), 0);
    control.release(3);

    // A call made now: closed too, and the message says what to do.
    let error = within(PATIENCE, "a call after the close", lab.echo("late".into()))
        .await
        .expect_err("the connection is closed");
    assert!(matches!(error, RpcError::Closed), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("`Connection::close`"), "{message}");
    assert!(
        message.contains("connect a new `Connection`, then create a new client on it"),
        "{message}"
    );
    let one_way = within(
        PATIENCE,
        "a one-way call after the close",
        lab.record("late".into()).one_way(),
    )
    .await;
    assert!(matches!(one_way, Err(RpcError::Closed)), "{one_way:?}");

    // As it says: no client on the closed connection, one on a new one.
    assert!(matches!(
        Client::new(&connection).await,
        Err(ConnectError::Closed)
    ));
    let again = connect("app-close-again").await;
    let lab = LabClient::new(Client::new(&again).await.expect("client")).with_queue(&queue.name);
    let echoed = within(
        PATIENCE,
        "a call on a new connection",
        lab.echo("again".into()),
    )
    .await;
    assert_eq!(echoed.expect("echo"), "again");
    again.close().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_request_the_broker_does_not_confirm_times_out() {
    let queue = TestQueue::new("unconfirmed");
    let server = serve_lab(
        &connect("unconfirmed-server").await,
        &queue,
        "s1",
        &LabControl::default(),
        8,
    )
    .await;
    let relay = Relay::start().await;
    let connection = relay.connect().await;
    let client = Client::new(&connection).await.expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);
    assert_eq!(lab.add(1, 2).await.expect("through the relay"), 3);

    // The request is written, but the broker never sees it: no confirmation,
    // no reply. The call gives up at its deadline all the same.
    relay.hold(true);
    let timeout = Duration::from_millis(300);
    let held = within(PATIENCE, "a held call", lab.add(2, 3).timeout(timeout)).await;
    match held {
        Err(RpcError::Timeout {
            method: "add",
            timeout: reported,
            ..
        }) => {
            assert_eq!(reported, timeout);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(client.pending_calls(), 0);

    // Released, the held request reaches the server (its late reply is
    // dropped) and the connection carries calls again.
    relay.hold(false);
    let after = within(PATIENCE, "a call after the release", lab.add(4, 5)).await;
    assert_eq!(after.expect("after the release"), 9);
    assert_eq!(client.pending_calls(), 0);
    server.shutdown().await;
}

/// A broker that takes a request and never confirms it (RabbitMQ 3.10.8
/// did so after a quorum queue's leader node was frozen: docs/SCALING.md):
/// once the confirm patience runs out the request is sent again on a new
/// channel, and the call is answered long before its timeout. The first
/// request was taken, so it runs too: a request sent again is a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_broker_never_confirms_is_sent_again() {
    let queue = TestQueue::new("never-confirmed");
    let control = LabControl::default();
    let server = serve_lab(
        &connect("never-confirmed-server").await,
        &queue,
        "s1",
        &control,
        8,
    )
    .await;
    let relay = Relay::start().await;
    let connection = relay.connect().await;
    let client = Client::builder()
        .timeout(LONG)
        .confirm_patience(Duration::from_millis(300))
        .build(&connection)
        .await
        .expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);
    assert_eq!(lab.add(1, 2).await.expect("through the relay"), 3);

    // The server holds each run until released, so that no reply tells
    // the client that the first request was taken.
    relay.drop_confirms(1);
    let call = tokio::spawn(lab.hold(7).into_future());
    assert_eq!(control.next_started().await, 7, "the first request runs");
    assert_eq!(
        within(PATIENCE, "the request sent again", control.next_started()).await,
        7,
        "sent again once its confirm was overdue"
    );
    assert_eq!(relay.dropped_confirms(), 1);
    control.release(2);
    let (name, _) = within(PATIENCE, "the call", call)
        .await
        .expect("task")
        .expect("answered");
    assert_eq!(name, "s1");
    assert_eq!(client.pending_calls(), 0);

    // One-way requests too: sent again, and both recorded.
    relay.drop_confirms(1);
    let sent = within(
        PATIENCE,
        "a one-way call never confirmed",
        lab.record("twice".into()).one_way(),
    )
    .await;
    sent.expect("sent again and confirmed");
    assert_eq!(relay.dropped_confirms(), 2);
    assert_eq!(
        within(PATIENCE, "both records", control.wait_recorded(2)).await,
        vec!["twice".to_owned(), "twice".to_owned()]
    );

    // The client goes on, on its new channels.
    assert_eq!(lab.add(2, 3).await.expect("after"), 5);
    server.shutdown().await;
}

/// A call whose confirm is overdue on a frozen broker (one that answers
/// nothing, `channel.open` included) ends at its own deadline with
/// `Timeout`, not when the connection is given up heartbeats later, nor as
/// `NotConnected` (its request was written).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_overdue_on_a_frozen_broker_times_out_at_its_deadline() {
    let relay = Relay::start().await;
    let connection = relay.connect().await;
    let client = Client::builder()
        .timeout(Duration::from_secs(1))
        .confirm_patience(Duration::from_millis(100))
        .build(&connection)
        .await
        .expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&unique("frozen-overdue"));
    relay.freeze(true);
    // A call held until the connection is given up (two heartbeats, some
    // 20 s) would end with another error.
    let failed = within(PATIENCE, "a call on a frozen broker", lab.add(1, 2)).await;
    assert!(
        matches!(failed, Err(RpcError::Timeout { .. })),
        "{failed:?}"
    );
    assert_eq!(client.pending_calls(), 0);
    relay.freeze(false);
}

/// Closing a connection to a broker that answers nothing returns once the
/// broker would be given up anyway (two heartbeats, 20 s by default), not
/// never (lapin awaits the broker's `close-ok` without watching the
/// heartbeats).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_connection_to_a_frozen_broker_returns() {
    let relay = Relay::start().await;
    let connection = relay.connect().await;
    relay.freeze(true);
    within(PATIENCE, "closing", connection.close()).await;
    assert!(!connection.is_connected());
    relay.freeze(false);
}

/// A connection lost again and again as soon as it is made (a broker that
/// closes it at once, a request that kills it each time it is redelivered)
/// is not remade in a tight loop: the first loss is redialled at once, each
/// next one in a row after the back-off (half of it at least: its jitter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_keeps_dying_young_is_remade_after_growing_delays() {
    let relay = Relay::start().await;
    let min = Duration::from_millis(400);
    let connection = within(
        PATIENCE,
        "connecting",
        Connection::builder(relay.url())
            .reconnect_delay(min, Duration::from_secs(60))
            .connect(),
    )
    .await
    .expect("connects");
    let mut took = Vec::new();
    for _ in 0..4 {
        let before = connection.reconnections();
        let cut = tokio::time::Instant::now();
        relay.cut();
        within(PATIENCE, "the reconnection", async {
            while connection.reconnections() == before {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        took.push(cut.elapsed());
    }
    // The second loss in a row waits half of `min` at least, the third
    // `min`, the fourth twice `min`.
    assert!(took[1] >= min / 2, "{took:?}");
    assert!(took[2] >= min, "{took:?}");
    assert!(took[3] >= min * 2, "{took:?}");
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_on_a_lost_server_is_redelivered_and_answered() {
    let queue = TestQueue::new("server-loss");
    let control = LabControl::default();
    let relay = Relay::start().await;
    let server_connection = relay.connect().await;
    let server = serve_lab(&server_connection, &queue, "s1", &control, 8).await;
    let connection = connect("server-loss-client").await;
    let client = patient_client(&connection).await;
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);

    let call = tokio::spawn(lab.hold(1).into_future());
    assert_eq!(control.next_started().await, 1);
    relay.cut();
    // The broker requeues the unacknowledged request; the server reconnects
    // and gets it again.
    assert_eq!(control.next_started().await, 1);
    // The first run was aborted with its session (its reply could not have
    // been published on the dead channel): the caller gets the second one's.
    control.release(2);
    let (name, redelivered) = within(PATIENCE, "the redelivered call", call)
        .await
        .expect("task")
        .expect("answered after redelivery");
    assert_eq!(name, "s1");
    assert!(
        redelivered,
        "the handler sees that the request was redelivered"
    );
    assert_eq!(control.handled.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(client.pending_calls(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_the_broker_is_replaced() {
    let queue = TestQueue::new("broker-close");
    let control = LabControl::default();
    let server = serve_lab(
        &connect("broker-close-server").await,
        &queue,
        "s1",
        &control,
        8,
    )
    .await;
    let name = unique("broker-close-client");
    let connection = connection_builder(&name).connect().await.expect("connect");
    let client = patient_client(&connection).await;
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);

    let call = tokio::spawn(lab.hold(1).into_future());
    control.next_started().await;
    assert_eq!(close_connections_named(&name).await, 1);
    match within(PATIENCE, "the call in flight", call)
        .await
        .expect("task")
    {
        Err(RpcError::ConnectionLost { .. }) => {}
        other => panic!("expected ConnectionLost, got {other:?}"),
    }
    control.release(1);
    let sum = within(PATIENCE, "a call after the close", lab.add(20, 22)).await;
    assert_eq!(sum.expect("add after reconnection"), 42);
    assert_eq!(client.pending_calls(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_error_does_not_replace_the_connection() {
    let name = unique("channel-error");
    let connection = connection_builder(&name).connect().await.expect("connect");
    let fixture = LabFixture::builder("channel-error")
        .connection(connection.clone())
        .start()
        .await;
    let LabFixture { queue, lab, .. } = &fixture;

    // A second server that declares the queue with other settings gets a
    // channel error (PRECONDITION_FAILED) on the same connection.
    let conflicting = rpc_runtime::Server::builder()
        .queue(&queue.name)
        .queue_type(rpc_runtime::QueueType::Quorum)
        .serve(
            &connection,
            rpc_tests::lab_server("conflict", &LabControl::default()),
        )
        .await;
    assert!(matches!(
        conflicting,
        Err(rpc_runtime::ServeError::Setup { .. })
    ));

    // The connection is the same one: nothing reconnected.
    assert_eq!(lab.add(2, 2).await.expect("add"), 4);
    assert_eq!(rpc_tests::connections_named(&name).await.len(), 1);
    // The server shut down, the client dropped, then the connection closed.
    fixture.shutdown().await;
    connection.close().await;
    // Each look runs rabbitmqctl, seconds on a loaded machine.
    within(CLI_PATIENCE, "the connection to close", async {
        while !rpc_tests::connections_named(&name).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_peer_that_never_answers_times_out() {
    // Accepts TCP connections and never says a word.
    let listener = rpc_tests::local_listener().await;
    let addr = listener.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        let mut accepted = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            accepted.push(socket);
        }
    });
    let url = format!("amqp://guest:secret-password@{addr}/%2f");
    let result = within(
        PATIENCE,
        "a connection attempt",
        rpc_runtime::Connection::builder(&url)
            .connect_timeout(Duration::from_millis(300))
            .connect(),
    )
    .await;
    match result {
        Err(error @ rpc_runtime::ConnectError::Timeout { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("did not complete the AMQP handshake"),
                "{message}"
            );
            assert!(!message.contains("secret-password"), "{message}");
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    // The URL's `connection_timeout` (milliseconds) is the attempt's.
    let result = within(
        PATIENCE,
        "a connection attempt with the URL's timeout",
        rpc_runtime::Connection::connect(format!("{url}?connection_timeout=250")),
    )
    .await;
    match result {
        Err(rpc_runtime::ConnectError::Timeout { timeout, .. }) => {
            assert_eq!(timeout, Duration::from_millis(250));
        }
        other => panic!("expected a connect timeout, got {other:?}"),
    }
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnection_a_queue_declared_late_still_gets_its_call() {
    // As after a broker's crash: the client is back before the server has
    // declared its queue again (or the broker recovered it).
    let present = TestQueue::new("late-queue-present");
    let late = TestQueue::new("late-queue");
    let control = LabControl::default();
    let server_connection = connect("late-queue-server").await;
    let server = serve_lab(&server_connection, &present, "s1", &control, 8).await;
    let relay = Relay::start().await;
    let connection = relay.connect().await;
    let client = patient_client(&connection).await;
    let lab = LabClient::new(client.clone()).with_queue(&present.name);
    within(PATIENCE, "a first call", lab.echo("up".into()))
        .await
        .expect("echo");
    relay.cut();
    // A call racing the cut may still go out on the lost connection.
    within(PATIENCE, "a call on the new session", async {
        while let Err(error) = lab.echo("back".into()).await {
            assert!(
                matches!(error, RpcError::ConnectionLost { .. }),
                "expected success or ConnectionLost, got {error:?}"
            );
        }
    })
    .await;

    let to_late = LabClient::new(client.clone()).with_queue(&late.name);
    let call = tokio::spawn(to_late.echo("late".into()).into_future());
    let one_way = tokio::spawn({
        let to_late = to_late.clone();
        async move { to_late.record("late one-way".into()).one_way().await }
    });
    // Without a queue, the requests are returned at once; they must not fail
    // with NoSuchService, so soon after a reconnection, but be sent again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.is_finished(), "the call ended: {:?}", call.await);
    assert!(
        !one_way.is_finished(),
        "the one-way call ended: {:?}",
        one_way.await
    );
    let late_server = serve_lab(&server_connection, &late, "s2", &control, 8).await;
    let echoed = within(PATIENCE, "the call to the late queue", call)
        .await
        .expect("task");
    assert_eq!(echoed.expect("echo from the late queue"), "late");
    within(PATIENCE, "the one-way call to the late queue", one_way)
        .await
        .expect("task")
        .expect("taken by the late queue");
    assert_eq!(
        within(PATIENCE, "the one-way request", control.wait_recorded(1)).await,
        ["late one-way"]
    );
    assert_eq!(client.pending_calls(), 0);
    late_server.shutdown().await;
    server.shutdown().await;
}

/// A client or a server set up while the connection is down waits for it
/// up to the connect timeout, then fails saying so, rather than hang for as
/// long as the outage lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_up_during_an_outage_fails_after_the_connect_timeout() {
    let relay = Relay::start().await;
    let connection = Connection::builder(relay.url())
        .connect_timeout(Duration::from_millis(200))
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(100))
        .connect()
        .await
        .expect("connect through the relay");
    // The relay gone, every reconnection is refused.
    drop(relay);
    within(PATIENCE, "the connection to go down", async {
        while connection.is_connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    let client = within(PATIENCE, "a client set up", Client::new(&connection)).await;
    match client {
        Err(error @ ConnectError::Reconnecting { waited, .. }) => {
            assert_eq!(waited, Duration::from_millis(200));
            assert!(error.to_string().contains("did not come back"), "{error}");
        }
        other => panic!("expected Reconnecting, got {other:?}"),
    }
    let queue = TestQueue::new("outage");
    let control = LabControl::default();
    let served = within(
        PATIENCE,
        "a server set up",
        rpc_runtime::Server::builder()
            .queue(&queue.name)
            .serve(&connection, rpc_tests::lab_server("s1", &control)),
    )
    .await;
    assert!(
        matches!(
            served,
            Err(rpc_runtime::ServeError::Connect(
                ConnectError::Reconnecting { .. }
            ))
        ),
        "{served:?}"
    );
}
