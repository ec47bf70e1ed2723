//! Requests whose callers gave up: a call that timed out before its request
//! was handed to the AMQP library takes its request back, so a broker that
//! stops reading (a resource alarm) gets, once it reads again, no more than
//! what was already handed over; the questions timed-out calls ask about
//! their queue, given up too, cost nothing once the broker reads again;
//! and a one-way call that cannot get a channel fails at once, saying why.

use futures_util::future::join_all;
use rpc_runtime::{Client, Connection, RpcError, ServerHandle};
use rpc_tests::{
    LabClient, LabControl, PATIENCE, TestQueue, amqp_url, connect, relay::Relay, serve_lab, within,
};
use std::{future::IntoFuture, time::Duration};

/// How many of a channel's requests the client hands to the AMQP library
/// at once (`transport::publish::WINDOW`): what may still be sent after
/// their calls gave up.
const WINDOW: usize = 1024;

/// What a client sends besides its requests while its calls time out and
/// once the broker reads again, at most (some 30 KB seen).
const OTHER_FRAMES: usize = 128 * 1024;

/// A server on a connection of its own, and a client of its queue whose
/// connection goes through a relay, which can hold what the client sends
/// as a broker under a resource alarm stops reading. Fields drop in order:
/// the queue, deleted, last.
struct Held {
    lab: LabClient,
    client: Client,
    _connection: Connection,
    relay: Relay,
    server: ServerHandle,
    _queue: TestQueue,
}

impl Held {
    async fn start(name: &str) -> Self {
        let queue = TestQueue::new(name);
        let server = serve_lab(
            &connect(&format!("{name}-server")).await,
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
        Self {
            lab,
            client,
            _connection: connection,
            relay,
            server,
            _queue: queue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_given_up_while_the_broker_does_not_read_send_no_more_than_a_window() {
    const CALLS: usize = 4 * WINDOW;
    let Held {
        lab,
        client,
        _connection,
        relay,
        server,
        _queue,
    } = Held::start("given-up").await;
    // A kilobyte a request, so that the requests outweigh the rest of the
    // traffic; what one call sends, measured through the relay.
    let text = "x".repeat(1000);
    assert_eq!(lab.echo(text.clone()).await.expect("warm-up"), text);
    let before = relay.forwarded_bytes();
    for _ in 0..10 {
        assert_eq!(lab.echo(text.clone()).await.expect("measured"), text);
    }
    let per_call = (relay.forwarded_bytes() - before) / 10;

    // The broker stops reading, as under a resource alarm: every call times
    // out, and nothing stays pending.
    relay.hold(true);
    let timeout = Duration::from_millis(300);
    let calls = (0..CALLS).map(|_| lab.echo(text.clone()).timeout(timeout).into_future());
    let ended = within(
        PATIENCE,
        "calls to a broker that does not read",
        join_all(calls),
    )
    .await;
    for outcome in &ended {
        assert!(
            matches!(outcome, Err(RpcError::Timeout { method: "echo", .. })),
            "expected a timeout, got {outcome:?}"
        );
    }
    assert_eq!(client.pending_calls(), 0);

    // Reading again, the broker gets what was handed over before the calls
    // gave up, and then the next call, which is answered.
    let held_back = relay.forwarded_bytes();
    relay.hold(false);
    let after = within(PATIENCE, "a call after the release", lab.add(4, 5)).await;
    assert_eq!(after.expect("after the release"), 9);
    let sent_late = relay.forwarded_bytes() - held_back;
    // A window of requests, and some other frames (the broker asked
    // whether a server consumes the queue, heartbeats, the next call).
    let most = WINDOW * per_call + OTHER_FRAMES;
    println!(
        "{CALLS} calls gave up: {sent_late} bytes sent after the release ({} requests of \
         {per_call} bytes; at most {most} bytes allowed)",
        sent_late / per_call
    );
    assert!(
        sent_late <= most,
        "{sent_late} bytes went to the broker after the release, more than a window of \
         {WINDOW} requests of {per_call} bytes: the requests of calls that had given up were \
         sent"
    );
    assert_eq!(client.pending_calls(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_way_call_that_cannot_open_its_channel_fails_at_once_saying_why() {
    let url = amqp_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    if rpc_runtime::TRANSPORT == "amqprs" {
        // amqprs takes the broker's `channel_max`, not the URL's (see its
        // link module): a URL that sets it is refused.
        let refused = Connection::connect(format!("{url}{separator}channel_max=2")).await;
        assert!(
            matches!(refused, Err(rpc_runtime::ConnectError::InvalidUrl { .. })),
            "{refused:?}"
        );
        return;
    }
    let queue = TestQueue::new("channel-max");
    let control = LabControl::default();
    let server = serve_lab(
        &connect("channel-max-server").await,
        &queue,
        "s1",
        &control,
        8,
    )
    .await;
    let connection = Connection::builder(format!("{url}{separator}channel_max=2"))
        .connect()
        .await
        .expect("connect");
    let client = Client::new(&connection).await.expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);
    assert_eq!(lab.add(1, 2).await.expect("a call"), 3);

    // No channel is left for one-way requests: the call fails long before
    // its timeout, with the AMQP library's reason, not as if the broker
    // were unreachable.
    let started = std::time::Instant::now();
    let sent = within(
        PATIENCE,
        "a one-way call without a channel",
        lab.record("nowhere".into())
            .timeout(Duration::from_secs(3600))
            .one_way(),
    )
    .await;
    match &sent {
        Err(
            error @ RpcError::ChannelRefused {
                method: "record", ..
            },
        ) => {
            let message = error.to_string();
            println!("failed after {:?}: {message}", started.elapsed());
            assert!(message.contains("channel_max"), "{message}");
            assert!(message.contains("not sent"), "{message}");
        }
        other => panic!("expected ChannelRefused, got {other:?}"),
    }
    // The connection was up all along, and still carries calls.
    assert_eq!(lab.add(2, 3).await.expect("a call after"), 5);
    server.shutdown().await;
}

/// Every call that times out asks the broker whether its queue has servers,
/// and while the broker does not read, every question is given up. A
/// question given up while its channel opened used to leave the opening
/// behind and open another: on amqprs, past the broker's `channel_max`, its
/// reader task panicked and left the connection open and dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_given_up_while_the_broker_does_not_read_leave_the_connection_usable() {
    const CALLS: u64 = 3000;
    let Held {
        lab,
        client,
        _connection,
        relay,
        server,
        _queue,
    } = Held::start("given-up-questions").await;
    assert_eq!(lab.add(1, 1).await.expect("a call"), 2);

    relay.hold(true);
    // One timeout after another, 1 ms apart: one question after another.
    let calls = (0..CALLS).map(|i| {
        lab.add(1, 1)
            .timeout(Duration::from_millis(200 + i))
            .into_future()
    });
    let ended = within(PATIENCE, "calls timing out", join_all(calls)).await;
    assert!(
        ended
            .iter()
            .all(|ended| matches!(ended, Err(RpcError::Timeout { .. }))),
        "every call times out"
    );
    relay.hold(false);
    let after = within(PATIENCE, "a call once the broker reads", lab.add(2, 3)).await;
    assert_eq!(after.expect("answered"), 5);
    assert_eq!(client.pending_calls(), 0);
    server.shutdown().await;
}

/// Calls to a missing queue that give up while their question is answered
/// leave the broker's answer (it closes the question's channel: 404) to
/// come after them. Closing that channel meanwhile crossed the broker's
/// close, and lapin dropped the whole connection, with every call on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn questions_given_up_about_a_missing_queue_never_cost_the_connection() {
    // Through the relay, whose extra hop widens the window in which the
    // two closes cross.
    let relay = Relay::start().await;
    let connection = relay.connect().await;
    let client = Client::new(&connection).await.expect("client");
    let missing = LabClient::new(client.clone()).with_queue(&rpc_tests::unique("given-up-missing"));
    for round in 0..10u64 {
        // Timeouts from 0.2 to 40 ms: questions given up at every stage.
        let calls = (0..200u64).map(|i| {
            let timeout = Duration::from_micros(200 + (i * 397 + round * 1013) % 40_000);
            missing.add(1, 1).timeout(timeout).into_future()
        });
        for ended in within(PATIENCE, "calls to a missing queue", join_all(calls)).await {
            assert!(
                matches!(
                    ended,
                    Err(RpcError::NoSuchService { .. } | RpcError::Timeout { .. })
                ),
                "{ended:?}"
            );
        }
    }
    assert_eq!(
        connection.reconnections(),
        0,
        "the connection was never lost"
    );
    assert_eq!(client.pending_calls(), 0);
}
