//! Timeouts: any duration is a valid timeout (none panics, none ends the
//! session for the other calls), and a call that times out says whether any
//! server was consuming its queue, or whether the queue existed at all;
//! calls that require a server fail at once without one.

use rpc_runtime::{Client, Connection, RpcError, Server};
use rpc_tests::{
    LabClient, LabControl, LabFixture, PATIENCE, TestQueue, amqp_url, connect, lab_client,
    serve_lab, within,
};
use std::{future::IntoFuture, sync::atomic::Ordering, time::Duration};

/// Timeouts far beyond what the broker accepts as an `expiration`
/// (ten years), up to `Duration::MAX`.
const HUGE: [Duration; 3] = [
    Duration::from_secs(100 * 365 * 24 * 3600),
    Duration::from_millis(u64::MAX),
    Duration::MAX,
];

/// The timeout of calls whose error must say how many servers consume the
/// queue: the client asks the broker for a tenth of it at most (800 ms; at
/// 200 ms the broker did not always answer while other tests loaded it, as
/// CI's cluster scenarios do beside the suite).
const ASKING: Duration = Duration::from_secs(8);

/// A timeout so long that a call waiting for it would trip the test's own
/// guard ([`PATIENCE`]) first: a call that ends under the guard ended for
/// another reason than its timeout.
const NEVER: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_timeouts_neither_panic_nor_end_the_session_of_other_calls() {
    let fixture = LabFixture::start("huge-timeouts").await;
    let LabFixture {
        client,
        lab,
        control,
        ..
    } = &fixture;

    // An unrelated call in flight on the same client and session.
    let held = tokio::spawn(lab.hold(1).into_future());
    assert_eq!(control.next_started().await, 1);

    for timeout in HUGE {
        let echoed = within(PATIENCE, "a call with a huge timeout", async {
            lab.echo("long".into()).timeout(timeout).await
        })
        .await;
        assert_eq!(echoed.expect("answered normally"), "long", "{timeout:?}");
        within(PATIENCE, "a one-way call with a huge timeout", async {
            lab.record(format!("{timeout:?}"))
                .timeout(timeout)
                .one_way()
                .await
        })
        .await
        .expect("one-way sent normally");
    }
    control.wait_recorded(HUGE.len()).await;

    control.release(1);
    let (name, redelivered) = within(PATIENCE, "the held call", held)
        .await
        .expect("task")
        .expect("the call in flight is unaffected");
    assert_eq!((name.as_str(), redelivered), ("s1", false));
    assert_eq!(client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_duration_the_api_takes_accepts_zero_and_the_maximum() {
    let queue = TestQueue::new("durations");
    for (min, max, connect_timeout) in [
        (Duration::ZERO, Duration::ZERO, Duration::MAX),
        (Duration::MAX, Duration::MAX, Duration::MAX),
    ] {
        let connection = Connection::builder(amqp_url())
            .reconnect_delay(min, max)
            .connect_timeout(connect_timeout)
            .connect()
            .await
            .expect("connect");
        let control = LabControl::default();
        for grace in [Duration::ZERO, Duration::MAX] {
            let server = Server::builder()
                .queue(&queue.name)
                .shutdown_grace(grace)
                .serve(&connection, rpc_tests::lab_server("s1", &control))
                .await
                .expect("serve");
            // A zero confirm patience is taken as the shortest (100 ms), not
            // as "send every request again at once".
            for (client_timeout, patience) in
                [(Duration::MAX, Duration::ZERO), (HUGE[0], Duration::MAX)]
            {
                let client = Client::builder()
                    .timeout(client_timeout)
                    .confirm_patience(patience)
                    .build(&connection)
                    .await
                    .expect("client");
                let lab = LabClient::new(client).with_queue(&queue.name);
                let sum = within(PATIENCE, "a call", lab.add(2, 3)).await;
                assert_eq!(sum.expect("add"), 5);
            }
            within(PATIENCE, "a shutdown", server.shutdown()).await;
        }

        // A zero timeout, on the client or on the call: a timeout at once,
        // nothing sent, the client fine.
        let server = serve_lab(&connection, &queue, "s1", &control, 8).await;
        let handled = control.handled.load(Ordering::SeqCst);
        let zero = Client::builder()
            .timeout(Duration::ZERO)
            .build(&connection)
            .await
            .expect("client");
        let lab = LabClient::new(zero.clone()).with_queue(&queue.name);
        for result in [
            lab.add(1, 1).await,
            lab.add(1, 1).timeout(Duration::ZERO).await,
        ] {
            assert!(
                matches!(&result, Err(RpcError::Timeout { timeout, .. }) if timeout.is_zero()),
                "{result:?}"
            );
            let message = result.expect_err("a zero timeout").to_string();
            assert!(
                message.contains("zero timeout, so it was not sent"),
                "{message}"
            );
        }
        assert!(matches!(
            lab.record("zero".into()).one_way().await,
            Err(RpcError::Timeout { .. })
        ));
        assert_eq!(lab.add(1, 1).timeout(NEVER).await.expect("add"), 2);
        assert_eq!(control.handled.load(Ordering::SeqCst), handled + 1);
        assert_eq!(zero.pending_calls(), 0);
        server.shutdown().await;
        connection.close().await;
    }
}

/// A queue whose server has gone: it exists (durable), nobody consumes it.
async fn abandoned_queue(connection: &Connection, prefix: &str) -> TestQueue {
    let queue = TestQueue::new(prefix);
    let server = serve_lab(connection, &queue, "gone", &LabControl::default(), 1).await;
    server.shutdown().await;
    queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_says_whether_a_server_was_consuming_the_queue() {
    let connection = connect("timeout-presence").await;

    // No server: the request waits in the queue, and the timeout says why.
    let queue = abandoned_queue(&connection, "no-server").await;
    let (client, lab) = lab_client(&connection, &queue).await;
    let error = within(
        PATIENCE,
        "a call to a queue without a server",
        lab.add(1, 2).timeout(ASKING),
    )
    .await
    .expect_err("nobody answers");
    match &error {
        RpcError::Timeout {
            consumers: Some(0),
            queue_missing: false,
            queue: reported,
            ..
        } => assert_eq!(reported, &queue.name),
        other => panic!("expected a timeout with no consumer, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&format!("no server is consuming `{}`", queue.name)),
        "{message}"
    );
    assert_eq!(client.pending_calls(), 0);

    // A server that is there but busy: the timeout says so.
    let control = LabControl::default();
    let server = serve_lab(&connection, &queue, "busy", &control, 1).await;
    let held = tokio::spawn(lab.hold(1).into_future());
    control.next_started().await;
    let error = within(
        PATIENCE,
        "a call behind a held one",
        lab.add(1, 2).timeout(ASKING),
    )
    .await
    .expect_err("the only server is busy");
    assert!(
        matches!(
            error,
            RpcError::Timeout {
                consumers: Some(1),
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("1 server(s) consume"), "{error}");
    control.release(2);
    within(PATIENCE, "the held call", held)
        .await
        .expect("task")
        .expect("hold");
    server.shutdown().await;
}

/// Without publisher confirms a request to a queue that does not exist is
/// dropped by the broker (it is published without `mandatory`): its call
/// times out, and the timeout says that the queue does not exist and the
/// request was dropped, not that it waits in the queue for a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_on_a_missing_queue_says_the_request_was_dropped() {
    let connection = connect("timeout-missing").await;
    let client = Client::builder()
        .publisher_confirms(false)
        .build(&connection)
        .await
        .expect("client");
    let missing = rpc_tests::unique("timeout-missing");
    let lab = LabClient::new(client.clone()).with_queue(&missing);
    let error = within(
        PATIENCE,
        "a call to a missing queue",
        lab.add(1, 2).timeout(ASKING),
    )
    .await
    .expect_err("no queue, no reply");
    match &error {
        RpcError::Timeout {
            queue_missing: true,
            consumers: None,
            queue,
            ..
        } => assert_eq!(queue, &missing),
        other => panic!("expected a timeout on a missing queue, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains(&format!("queue `{missing}` does not exist")),
        "{message}"
    );
    assert!(message.contains("the request was dropped"), "{message}");
    assert!(!message.contains("waits in the queue"), "{message}");
    assert!(!message.contains("no server is consuming"), "{message}");
    assert_eq!(client.pending_calls(), 0);
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_require_a_server_fail_at_once_without_one() {
    let connection = connect("require-server").await;
    let queue = abandoned_queue(&connection, "require-server").await;

    // Per call, on a client that would otherwise wait.
    let (_, lab) = lab_client(&connection, &queue).await;
    let failed = within(
        PATIENCE,
        "a call that requires a server",
        lab.add(1, 2).timeout(NEVER).require_server(),
    )
    .await;
    match failed {
        Err(RpcError::NoServer { queue: reported }) => assert_eq!(reported, queue.name),
        other => panic!("expected NoServer, got {other:?}"),
    }
    let one_way = lab.record("x".into()).require_server().one_way().await;
    assert!(
        matches!(one_way, Err(RpcError::NoServer { .. })),
        "{one_way:?}"
    );

    // For every call of a client.
    let client = Client::builder()
        .timeout(NEVER)
        .require_server(true)
        .build(&connection)
        .await
        .expect("client");
    let required = LabClient::new(client.clone()).with_queue(&queue.name);
    let failed = within(PATIENCE, "a call", required.add(1, 2)).await;
    assert!(
        matches!(failed, Err(RpcError::NoServer { .. })),
        "{failed:?}"
    );
    let missing = LabClient::new(client.clone()).with_queue(&format!("{}.missing", queue.name));
    let failed = within(PATIENCE, "a call to a missing queue", missing.add(1, 2)).await;
    let error = failed.expect_err("no queue");
    assert!(
        matches!(&error, RpcError::NoSuchService { queue: reported } if *reported == format!("{}.missing", queue.name)),
        "{error:?}"
    );
    // Found missing by asking the broker before sending, not returned by
    // it: the message says nothing was delivered, not that it was returned.
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "no service is listening on queue `{}.missing`",
            queue.name
        )),
        "{message}"
    );
    assert!(
        message.contains("no queue of that name exists"),
        "{message}"
    );
    assert!(message.contains("nothing was delivered"), "{message}");
    assert!(!message.contains("returned"), "{message}");

    // Once a server is back, they go through (an answer of "no server" is
    // trusted for a tenth of a second).
    let server = serve_lab(&connection, &queue, "back", &LabControl::default(), 8).await;
    let sum = within(PATIENCE, "calls once a server is back", async {
        loop {
            match required.add(1, 2).await {
                // Polled: the answer "no server" expires by itself.
                Err(RpcError::NoServer { .. }) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                other => break other,
            }
        }
    })
    .await;
    assert_eq!(sum.expect("add"), 3);
    assert_eq!(client.pending_calls(), 0);
    server.shutdown().await;
}

/// A question about a queue given up half-way (its call's patience ran
/// out while the broker had not yet read it) must not answer the next
/// question, about another queue: the broker's 404 for a missing queue
/// closes the channel it was asked on, and must not make a served queue
/// look missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_given_up_does_not_answer_the_next_one() {
    let served = TestQueue::new("question-served");
    let control = LabControl::default();
    let server_connection = connect("question-server").await;
    let server = serve_lab(&server_connection, &served, "s1", &control, 8).await;
    let relay = rpc_tests::relay::Relay::start().await;
    let connection = relay.connect().await;
    let client = Client::builder()
        .require_server(true)
        .build(&connection)
        .await
        .expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&served.name);
    // The first question opens the channel questions go on.
    let sum = within(PATIENCE, "a first call", lab.add(1, 2).timeout(NEVER)).await;
    assert_eq!(sum.expect("served"), 3);

    // A question about a missing queue that the broker reads only after
    // its call gave up (a tenth of 200 ms of patience).
    relay.hold(true);
    let missing = LabClient::new(client.clone()).with_queue(&format!("{}.missing", served.name));
    let given_up = within(
        PATIENCE,
        "a call held at the relay",
        missing.add(1, 2).timeout(Duration::from_millis(200)),
    )
    .await;
    assert!(given_up.is_err(), "{given_up:?}");

    // The next question, about a served queue the client has not asked
    // about (no answer kept), written while the first is still held.
    let other = TestQueue::new("question-other");
    let other_server = serve_lab(&server_connection, &other, "s2", &control, 8).await;
    let before = relay.held_bytes();
    let asked = LabClient::new(client.clone()).with_queue(&other.name);
    let call = tokio::spawn(asked.add(2, 3).timeout(NEVER).into_future());
    within(PATIENCE, "the next question to be written", async {
        while relay.held_bytes() == before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    relay.hold(false);
    let sum = within(PATIENCE, "the call to a served queue", call)
        .await
        .expect("the call's task");
    assert_eq!(sum.expect("the queue is served"), 5);
    other_server.shutdown().await;
    server.shutdown().await;
    connection.close().await;
}
