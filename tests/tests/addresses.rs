//! A connection that knows several brokers (the nodes of a cluster): it
//! connects to the first that answers, and when it loses its broker (killed,
//! or frozen so that only missing heartbeats tell) it moves to the next.
//! Each "node" here is a [`Relay`] in front of the tests' broker, which the
//! test kills (drops) or freezes without touching the broker.

use futures_util::future::join_all;
use rpc_runtime::{Client, ConnectError, Connection, RpcError};
use rpc_tests::{
    LabClient, LabControl, PATIENCE, TestQueue, amqp_url, connect, relay::Relay, serve_lab, within,
};
use std::{future::IntoFuture, time::Duration};

/// Longer than any guard: a call failing by timeout fails the test.
const LONG: Duration = Duration::from_secs(300);

/// The URL of a port where nothing listens, with a password to look for.
async fn dead_url() -> String {
    let listener = rpc_tests::local_listener().await;
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("amqp://guest:dead-node-password@{addr}/%2f")
}

/// Connects to `dead`, then the tests' broker, comma-separated as
/// `AMQP_URL` may hold them.
async fn connect_after(dead: &str) -> Connection {
    within(
        PATIENCE,
        "connecting",
        Connection::connect(format!("{dead}, {}", amqp_url())),
    )
    .await
    .expect("the second address answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_uses_the_first_address_that_answers() {
    let dead = dead_url().await;
    let connection = connect_after(&dead).await;
    assert!(connection.is_connected());
    let url = connection.url();
    assert!(!url.contains("dead-node-password"), "{url}");
    assert!(
        !url.contains(&dead[dead.rfind('@').expect("an @")..]),
        "connected to the live broker, not the dead one: {url}"
    );
    connection.close().await;
}

/// Calls carry the user of the address connected to, which the broker
/// checks their `user_id` against: not the first address's, when another
/// answered (the broker would refuse every request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_carry_the_user_of_the_address_connected_to() {
    let queue = TestQueue::new("addresses-user");
    let control = LabControl::default();
    let server_connection = connect("addresses-user-server").await;
    let server = serve_lab(&server_connection, &queue, "s1", &control, 8).await;
    let live_user = server_connection.user().expect("a URL with a user");

    let dead = dead_url().await.replace("guest:", "nobody:");
    let connection = connect_after(&dead).await;
    assert_eq!(connection.user().as_deref(), Some(live_user.as_str()));
    let client = Client::builder()
        .timeout(LONG)
        .build(&connection)
        .await
        .expect("client");
    let lab = LabClient::new(client).with_queue(&queue.name);
    let report = within(PATIENCE, "a call", lab.context())
        .await
        .expect("the broker takes the request");
    assert_eq!(report.user_id.as_deref(), Some(live_user.as_str()));
    server.shutdown().await;
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_address_answers_the_error_names_each() {
    let first = dead_url().await;
    let second = dead_url().await;
    let result = within(
        PATIENCE,
        "connecting",
        Connection::builder(&first).address(&second).connect(),
    )
    .await;
    match result {
        Err(error @ ConnectError::NoBrokerAnswered { .. }) => {
            let message = error.to_string();
            for url in [&first, &second] {
                let host = &url[url.rfind('@').expect("an @")..url.rfind('/').expect("a /")];
                assert!(message.contains(host), "{host} missing from: {message}");
            }
            assert!(!message.contains("dead-node-password"), "{message}");
        }
        other => panic!("expected NoBrokerAnswered, got {other:?}"),
    }
}

/// A client connected through `nodes`' relays, in order, reconnecting fast.
async fn client_through(nodes: &[&Relay], queue: &TestQueue) -> (Connection, Client, LabClient) {
    let mut builder = Connection::builder(nodes[0].url())
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(200));
    for node in &nodes[1..] {
        builder = builder.address(node.url());
    }
    let connection = builder.connect().await.expect("connect");
    let client = Client::builder()
        .timeout(LONG)
        .build(&connection)
        .await
        .expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);
    (connection, client, lab)
}

/// A call after the loss is answered, through `relay`.
async fn answered_through(lab: &LabClient, connection: &Connection, relay: &Relay, text: &str) {
    let echoed = within(PATIENCE, "a call after the loss", lab.echo(text.into())).await;
    assert_eq!(echoed.expect("answered through the second address"), text);
    let port = |url: &str| url.rsplit_once(':').map(|(_, port)| port.to_owned());
    assert_eq!(
        port(&connection.url()),
        port(&relay.url()),
        "now connected through the second address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_losing_its_broker_a_connection_moves_to_the_next_address() {
    let queue = TestQueue::new("addresses-killed");
    let control = LabControl::default();
    let server = serve_lab(
        &connect("addresses-killed-server").await,
        &queue,
        "s1",
        &control,
        8,
    )
    .await;
    let first = Relay::start().await;
    let second = Relay::start().await;
    let (connection, client, lab) = client_through(&[&first, &second], &queue).await;
    let first_port = first
        .url()
        .rsplit_once(':')
        .map(|(_, port)| port.to_owned());
    assert_eq!(
        connection
            .url()
            .rsplit_once(':')
            .map(|(_, port)| port.to_owned()),
        first_port,
        "connected through the first address"
    );

    let calls: Vec<_> = (0..4)
        .map(|tag| tokio::spawn(lab.hold(tag).into_future()))
        .collect();
    for _ in 0..4 {
        control.next_started().await;
    }
    // The first "node" dies: its connections break, it accepts no more.
    drop(first);
    for call in within(PATIENCE, "calls failing on the lost node", join_all(calls)).await {
        match call.expect("task") {
            Err(RpcError::ConnectionLost { .. }) => {}
            other => panic!("expected ConnectionLost, got {other:?}"),
        }
    }
    assert_eq!(client.pending_calls(), 0);
    control.release(4);

    answered_through(&lab, &connection, &second, "moved").await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_stops_answering_is_left_after_two_heartbeats() {
    let queue = TestQueue::new("addresses-frozen");
    let control = LabControl::default();
    let server = serve_lab(
        &connect("addresses-frozen-server").await,
        &queue,
        "s1",
        &control,
        8,
    )
    .await;
    let first = Relay::start().await;
    let second = Relay::start().await;
    // No heartbeat in the URLs: the framework's default (10 s) applies.
    let (connection, client, lab) = client_through(&[&first, &second], &queue).await;

    let call = tokio::spawn(lab.hold(1).into_future());
    assert_eq!(control.next_started().await, 1);
    // Nothing passes either way now, as with a node frozen (SIGSTOP) or
    // cut off: no error, no close, only missing heartbeats tell.
    first.freeze(true);
    // Two heartbeat intervals (20 s) and the guard's margin.
    let failed = within(
        Duration::from_secs(20) + PATIENCE,
        "the call on the frozen connection to fail",
        call,
    )
    .await
    .expect("task");
    assert!(
        matches!(failed, Err(RpcError::ConnectionLost { .. })),
        "expected ConnectionLost, got {failed:?}"
    );
    control.release(1);
    answered_through(&lab, &connection, &second, "thawed").await;
    assert_eq!(client.pending_calls(), 0);
    server.shutdown().await;
}
