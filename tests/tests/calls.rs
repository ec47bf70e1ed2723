//! Calls through generated clients and servers against the real broker.

use futures_util::future::join_all;
use rpc_examples::{FibError, FibonacciClient, FibonacciServer, IterativeFib};
use rpc_runtime::{CallError, Client, RawReply, ReplyTo, RpcError, Server};
use rpc_tests::{
    LabClient, LabError, LabFixture, PATIENCE, Point, Shape, TestQueue, connect, within,
};
use std::{collections::HashSet, future::IntoFuture, time::Duration};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_of_every_argument_and_return_shape() {
    let fixture = LabFixture::start("round-trip").await;
    let LabFixture { lab, control, .. } = &fixture;

    assert_eq!(lab.echo("héllo".into()).await.expect("echo"), "héllo");
    assert_eq!(lab.add(40, 2).await.expect("add"), 42);
    lab.nothing().await.expect("zero arguments, unit result");
    assert_eq!(
        lab.describe(Shape::Circle { radius: 1.5 }, Point { x: 1, y: -2 })
            .await
            .expect("struct and enum arguments"),
        "Circle { radius: 1.5 } at (1, -2)"
    );
    assert_eq!(
        lab.describe(Shape::Dot, Point { x: 0, y: 0 })
            .await
            .expect("unit variant"),
        "Dot at (0, 0)"
    );
    assert_eq!(control.handled.load(std::sync::atomic::Ordering::SeqCst), 5);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fibonacci_example_answers_and_reports_overflow() {
    let queue = TestQueue::new("fib");
    let connection = connect("fib").await;
    let server = Server::builder()
        .queue(&queue.name)
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await
        .expect("serve");
    let client = FibonacciClient::new(Client::new(&connection).await.expect("client"))
        .with_queue(&queue.name);

    assert_eq!(client.fib(30).await.expect("fib(30)"), 832040);
    assert_eq!(client.fib(93).await.expect("fib(93)"), 12200160415121876738);
    match client.fib(94).await {
        Err(CallError::App(FibError::Overflow { n: 94 })) => {}
        other => panic!("fib(94) must be the overflow error, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_errors_reach_the_caller_typed() {
    let fixture = LabFixture::start("app-error").await;
    let LabFixture { lab, .. } = &fixture;

    let error = lab
        .describe(Shape::Square(-3.0), Point { x: 0, y: 0 })
        .await
        .expect_err("negative sizes are refused");
    assert_eq!(error.app(), Some(&LabError::NegativeSize(-3.0)));
    assert!(error.rpc().is_none());
    // The error converts with `?` into anyhow, keeping its message.
    let converted: anyhow::Error = error.into();
    assert_eq!(converted.to_string(), "negative size: -3");
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_each_get_their_own_reply() {
    let fixture = LabFixture::builder("concurrent").prefetch(64).start().await;
    let LabFixture { client, lab, .. } = &fixture;

    let calls = (0..1000i64).map(|i| {
        let lab = lab.clone();
        tokio::spawn(async move { (i, lab.add(i, 1_000_000).await) })
    });
    let results = within(PATIENCE, "1,000 calls", join_all(calls)).await;
    for result in results {
        let (i, sum) = result.expect("task");
        assert_eq!(
            sum.expect("call"),
            i + 1_000_000,
            "call {i} got another call's reply"
        );
    }
    assert_eq!(client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_reply_to_works_too() {
    let fixture = LabFixture::builder("direct-reply-to")
        .prefetch(16)
        .client(Client::builder().reply_to(ReplyTo::DirectReplyTo))
        .start()
        .await;
    let LabFixture { client, lab, .. } = &fixture;

    let results = join_all((0..200i64).map(|i| {
        let lab = lab.clone();
        async move { (i, lab.add(i, i).await) }
    }))
    .await;
    for (i, sum) in results {
        assert_eq!(sum.expect("call"), 2 * i);
    }
    assert_eq!(client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_a_service_without_a_queue_fails_fast() {
    let connection = connect("no-queue").await;
    let client = Client::builder()
        // Far longer than the guard below: failing by timeout would fail the test.
        .timeout(Duration::from_secs(300))
        .build(&connection)
        .await
        .expect("client");
    let missing = rpc_tests::unique("missing");
    let lab = LabClient::new(client.clone()).with_queue(&missing);

    let result = within(PATIENCE, "a call to a missing queue", lab.echo("x".into())).await;
    match &result {
        Err(RpcError::NoSuchService { queue }) => assert_eq!(queue, &missing),
        other => panic!("expected NoSuchService, got {other:?}"),
    }
    let message = result.expect_err("no queue").to_string();
    assert!(
        message.contains(&format!("no service is listening on queue `{missing}`")),
        "{message}"
    );
    assert!(
        message.contains("no queue of that name exists"),
        "{message}"
    );
    assert!(message.contains("nothing was delivered"), "{message}");
    assert_eq!(client.pending_calls(), 0);
    // The client stays usable.
    let again = within(PATIENCE, "a second call", lab.add(1, 2)).await;
    assert!(matches!(again, Err(RpcError::NoSuchService { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_against_a_slow_handler_leaves_no_pending_call() {
    let fixture = LabFixture::start("timeout").await;
    let LabFixture {
        client,
        lab,
        control,
        ..
    } = &fixture;

    let slow = lab.hold(1).timeout(Duration::from_millis(200));
    let result = within(PATIENCE, "a call timing out", slow).await;
    match result {
        Err(RpcError::Timeout {
            method, timeout, ..
        }) => {
            assert_eq!(method, "hold");
            assert_eq!(timeout, Duration::from_millis(200));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(client.pending_calls(), 0);

    // The handler did start, and its late reply is dropped without harm.
    assert_eq!(control.next_started().await, 1);
    control.release(1);
    assert_eq!(lab.echo("after".into()).await.expect("echo"), "after");
    assert_eq!(client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_call_leaves_no_pending_call() {
    let fixture = LabFixture::start("dropped").await;
    let LabFixture {
        client,
        lab,
        control,
        ..
    } = &fixture;

    let call = tokio::spawn(lab.hold(7).into_future());
    assert_eq!(control.next_started().await, 7);
    assert_eq!(client.pending_calls(), 1);
    call.abort();
    let _ = call.await;
    assert_eq!(client.pending_calls(), 0);
    control.release(1);
    fixture.shutdown().await;
}

/// Clients come and go on a long-lived connection: dropping one closes its
/// channels without ever costing the connection (lapin's own cancel of a
/// dropped reply consumer once raced the channel's close, and the broker
/// closed the connection: 504, on a busy machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_dropped_one_after_another_never_cost_their_connection() {
    let fixture = LabFixture::start("dropped-clients").await;
    let LabFixture {
        connection, queue, ..
    } = &fixture;
    for n in 0..100 {
        let client = Client::new(connection).await.expect("client");
        let lab = LabClient::new(client).with_queue(&queue.name);
        assert_eq!(
            within(PATIENCE, "a call", lab.add(n, 1))
                .await
                .expect("add"),
            n + 1
        );
    }
    assert_eq!(connection.reconnections(), 0, "the connection was lost");
    assert_eq!(fixture.lab.add(2, 2).await.expect("add"), 4);
    fixture.shutdown().await;
}

/// A queue that refuses every request: at its length limit (0) with
/// `overflow = reject-publish`, so the broker nacks each publish.
async fn refusing_queue(prefix: &str) -> TestQueue {
    use rpc_runtime::lapin::{
        options::QueueDeclareOptions,
        types::{AMQPValue, FieldTable},
    };
    let queue = TestQueue::new(prefix);
    let raw = rpc_tests::raw::Raw::open().await.expect("raw connection");
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongInt(0));
    arguments.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    raw.channel
        .queue_declare(
            queue.name.as_str().into(),
            QueueDeclareOptions::default(),
            arguments,
        )
        .await
        .expect("declare the refusing queue");
    queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_broker_keeps_refusing_fails_with_refused_at_its_timeout() {
    let queue = refusing_queue("refusing").await;
    let connection = connect("refusing").await;
    let timeout = Duration::from_millis(1500);
    let client = Client::builder()
        .timeout(timeout)
        .build(&connection)
        .await
        .expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&queue.name);

    // Sent again (on new channels) while the timeout allows, then refused.
    let result = within(PATIENCE, "a refused call", lab.echo("x".into())).await;
    assert!(
        matches!(result, Err(RpcError::Refused { method: "echo" })),
        "{result:?}"
    );
    let one_way = within(
        PATIENCE,
        "a refused one-way call",
        lab.record("y".into()).one_way(),
    )
    .await;
    assert!(
        matches!(one_way, Err(RpcError::Refused { method: "record" })),
        "{one_way:?}"
    );
    assert_eq!(client.pending_calls(), 0);

    // The client goes on: a call to a queue that takes requests is answered.
    let fixture = LabFixture::start("after-refusals").await;
    let other = LabClient::new(client.clone()).with_queue(&fixture.queue.name);
    let answered = within(PATIENCE, "a call after refusals", other.add(1, 2)).await;
    assert_eq!(answered.expect("answered"), 3);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_run_without_a_reply() {
    let fixture = LabFixture::start("one-way").await;
    let LabFixture {
        client,
        lab,
        control,
        ..
    } = &fixture;

    for tag in ["a", "b", "c"] {
        lab.record(tag.into()).one_way().await.expect("published");
    }
    assert_eq!(client.pending_calls(), 0, "one-way calls wait for nothing");
    let recorded: HashSet<String> = control.wait_recorded(3).await.into_iter().collect();
    assert_eq!(
        recorded,
        HashSet::from(["a".into(), "b".into(), "c".into()])
    );

    let missing = LabClient::new(client.clone()).with_queue(&rpc_tests::unique("missing"));
    let error = missing
        .record("x".into())
        .one_way()
        .await
        .expect_err("no queue");
    assert!(matches!(error, RpcError::NoSuchService { .. }), "{error:?}");
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_services_share_one_connection() {
    // The lab's queue, server and client from the fixture; the Fibonacci
    // service beside them, on the same connection and client.
    let fixture = LabFixture::start("multi-lab").await;
    let LabFixture {
        connection,
        client,
        lab,
        ..
    } = &fixture;
    let fib_queue = TestQueue::new("multi-fib");
    let fib_server = Server::builder()
        .queue(&fib_queue.name)
        .serve(connection, FibonacciServer::new(IterativeFib))
        .await
        .expect("serve");
    let fib = FibonacciClient::new(client.clone()).with_queue(&fib_queue.name);

    let (sum, number) = tokio::join!(lab.add(2, 3), fib.fib(10));
    assert_eq!(sum.expect("lab"), 5);
    assert_eq!(number.expect("fib"), 55);
    fixture.shutdown().await;
    fib_server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_queue_names_follow_the_documented_rule() {
    use rpc_runtime::Service;
    assert_eq!(
        <rpc_tests::LabServer<rpc_tests::LabImpl> as Service>::DEFAULT_QUEUE,
        "lab"
    );
    assert_eq!(LabClient::DEFAULT_QUEUE, "lab");
    assert_eq!(FibonacciClient::DEFAULT_QUEUE, "rpc_queue");
    // A raw identifier's name is the name without `r#`.
    assert_eq!(InventoryClient::DEFAULT_QUEUE, "inventory");
    assert_eq!(
        <InventoryServer<()> as Service>::NAME,
        "Inventory",
        "the same name as the queue's"
    );
}

#[rpc_runtime::rpc_service]
pub trait r#Inventory {
    async fn stock(&self) -> u32;
}

impl Inventory for () {
    async fn stock(&self) -> u32 {
        0
    }
}

/// An application's own error type, wrapping the errors of the calls it makes.
#[derive(Debug, thiserror::Error)]
enum AppError {
    #[error("the lab refused: {0}")]
    Lab(#[from] CallError<LabError>),
    #[error("the lab is unreachable: {0}")]
    Rpc(#[from] RpcError),
}

async fn area_then_sum(lab: &LabClient, side: f64) -> Result<i64, AppError> {
    let description = lab
        .describe(Shape::Square(side), Point { x: 0, y: 0 })
        .await?;
    let sum = lab.add(description.len() as i64, 1).await?;
    Ok(sum)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_kinds_of_errors_convert_with_the_question_mark() {
    let fixture = LabFixture::start("question-mark").await;
    let LabFixture { lab, .. } = &fixture;

    assert_eq!(
        area_then_sum(lab, 2.0).await.expect("fine"),
        "Square(2.0) at (0, 0)".len() as i64 + 1
    );
    match area_then_sum(lab, -1.0).await {
        Err(AppError::Lab(CallError::App(LabError::NegativeSize(size)))) => assert_eq!(size, -1.0),
        other => panic!("expected the lab's error, got {other:?}"),
    }
    fixture.shutdown().await;
}

/// A lab server on a new queue with a prefetch of 64, a client, and two
/// stubs on it: the fixture's, for that queue, and one for a queue that does
/// not exist.
async fn present_and_absent(name: &str) -> (LabFixture, LabClient) {
    let fixture = LabFixture::builder(name).prefetch(64).start().await;
    let absent = LabClient::new(fixture.client.clone()).with_queue(&rpc_tests::unique("absent"));
    (fixture, absent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returned_requests_fail_their_own_calls_only() {
    let (fixture, absent) = present_and_absent("returns").await;
    let LabFixture {
        client,
        lab: present,
        ..
    } = &fixture;

    // Many calls at once, so that the broker confirms several together:
    // every returned request must fail its own call, and no other.
    let calls = (0..3000i64).map(|i| {
        let (present, absent) = (present.clone(), absent.clone());
        tokio::spawn(async move {
            if i % 10 == 0 {
                (i, absent.add(i, 1).await)
            } else {
                (i, present.add(i, 1).await)
            }
        })
    });
    for result in within(PATIENCE, "3,000 calls", join_all(calls)).await {
        match result.expect("task") {
            (i, Err(RpcError::NoSuchService { .. })) if i % 10 == 0 => {}
            (i, Ok(sum)) if i % 10 != 0 => assert_eq!(sum, i + 1),
            (i, other) => panic!("call {i} ended with {other:?}"),
        }
    }
    assert_eq!(client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_dropped_while_publishing_leave_the_others_intact() {
    let (fixture, absent) = present_and_absent("abandoned").await;
    let LabFixture {
        client,
        lab: present,
        ..
    } = &fixture;

    // Calls given up after 0 to 400 us: dropped while lapin writes their
    // request, while they await its confirmation, or while they await the
    // reply. Returned requests ride on whichever confirmation the broker
    // sends next, abandoned ones included: every call that is kept must
    // still end as it should, and none may wait for its timeout.
    let calls = (0..3000i64).map(|i| {
        let (present, absent) = (present.clone(), absent.clone());
        tokio::spawn(async move {
            let lab = if i % 5 == 0 { absent } else { present };
            if i % 2 == 0 {
                let give_up = Duration::from_micros(u64::try_from(i % 400).expect("small"));
                let _ = tokio::time::timeout(give_up, lab.add(i, 1).into_future()).await;
                None
            } else {
                Some((i, lab.add(i, 1).await))
            }
        })
    });
    for result in within(PATIENCE, "3,000 calls", join_all(calls)).await {
        match result.expect("task") {
            None => {}
            Some((i, Err(RpcError::NoSuchService { .. }))) if i % 5 == 0 => {}
            Some((i, Ok(sum))) if i % 5 != 0 => assert_eq!(sum, i + 1),
            Some((i, other)) => panic!("call {i} ended with {other:?}"),
        }
    }
    assert_eq!(client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_calls_to_a_missing_queue_fail_exactly() {
    let fixture = LabFixture::builder("one-way-returns")
        .prefetch(64)
        .start()
        .await;
    let LabFixture {
        client,
        lab: present,
        control,
        ..
    } = &fixture;
    let absent = LabClient::new(client.clone()).with_queue(&rpc_tests::unique("absent"));

    let calls = (0..300).map(|i| {
        let (present, absent) = (present.clone(), absent.clone());
        tokio::spawn(async move {
            if i % 3 == 0 {
                (i, absent.record(i.to_string()).one_way().await)
            } else {
                (i, present.record(i.to_string()).one_way().await)
            }
        })
    });
    for result in within(PATIENCE, "300 one-way calls", join_all(calls)).await {
        match result.expect("task") {
            (i, Err(RpcError::NoSuchService { .. })) if i % 3 == 0 => {}
            (i, Ok(())) if i % 3 != 0 => {}
            (i, other) => panic!("one-way call {i} ended with {other:?}"),
        }
    }
    assert_eq!(control.wait_recorded(200).await.len(), 200);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_empty_or_too_long_for_amqp_are_errors_not_panics() {
    let connection = connect("long-names").await;
    let client = Client::new(&connection).await.expect("client");
    let long = "q".repeat(300);
    let lab = LabClient::new(client.clone()).with_queue(&long);
    match lab.echo("x".into()).await {
        Err(RpcError::InvalidQueueName { queue }) => assert_eq!(queue, long),
        other => panic!("expected InvalidQueueName, got {other:?}"),
    }
    let refused = Server::builder()
        .queue(&long)
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await;
    assert!(matches!(
        refused,
        Err(rpc_runtime::ServeError::InvalidQueueName { .. })
    ));

    // An empty name would have the broker name the server's queue itself.
    let lab = LabClient::new(client.clone()).with_queue("");
    assert!(matches!(
        lab.echo("x".into()).await,
        Err(RpcError::InvalidQueueName { .. })
    ));
    let refused = Server::builder()
        .queue("")
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await;
    assert!(matches!(
        refused,
        Err(rpc_runtime::ServeError::InvalidQueueName { .. })
    ));

    // A method named at run time can be too long for AMQP's `type`: an
    // error at once, before anything is sent.
    let method = "m".repeat(300);
    let error = within(
        PATIENCE,
        "a call with a long method name",
        client.call_raw("calls-long-method", "Lab", &method, vec![0x90]),
    )
    .await
    .expect_err("not sent");
    assert_eq!(error.kind(), "not_sent");
    match error {
        RpcError::InvalidMethodName { method: named } => assert_eq!(named, method),
        other => panic!("expected InvalidMethodName, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_publisher_confirms_a_missing_queue_is_a_timeout() {
    let connection = connect("no-confirms").await;
    let client = Client::builder()
        .publisher_confirms(false)
        .timeout(Duration::from_millis(300))
        .build(&connection)
        .await
        .expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&rpc_tests::unique("absent"));
    assert!(matches!(
        lab.echo("x".into()).await,
        Err(RpcError::Timeout { .. })
    ));
    assert_eq!(client.pending_calls(), 0);
    // A one-way call is fire-and-forget without confirms: the broker drops
    // the request, and nothing says so.
    let one_way = within(
        PATIENCE,
        "a one-way call to a missing queue",
        lab.record("dropped".into()).one_way(),
    )
    .await;
    assert!(one_way.is_ok(), "{one_way:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_calls_name_the_method_at_run_time_and_return_encoded_values() {
    let fixture = LabFixture::start("raw-call").await;
    let (client, queue) = (&fixture.client, fixture.queue.name.as_str());

    // add(40, 2): the arguments as a MessagePack array.
    let args = rmp_serde::to_vec(&(40i64, 2i64)).expect("encode");
    match within(PATIENCE, "add", client.call_raw(queue, "Lab", "add", args)).await {
        Ok(RawReply::Ok(value)) => {
            assert_eq!(rmp_serde::from_slice::<i64>(&value).expect("an i64"), 42)
        }
        other => panic!("expected 42, got {other:?}"),
    }

    // The method's own error comes back as its encoded value.
    let args =
        rmp_serde::to_vec_named(&(Shape::Square(-1.0), Point { x: 0, y: 0 })).expect("encode");
    match within(
        PATIENCE,
        "describe",
        client.call_raw(queue, "Lab", "describe", args),
    )
    .await
    {
        Ok(RawReply::Err(value)) => assert_eq!(
            rmp_serde::from_slice::<LabError>(&value).expect("a LabError"),
            LabError::NegativeSize(-1.0)
        ),
        other => panic!("expected the method's error, got {other:?}"),
    }

    // A method the service does not have: a fault, whose kind names it.
    let error = within(
        PATIENCE,
        "nope",
        client.call_raw(queue, "Lab", "nope", vec![0x90]),
    )
    .await
    .expect_err("no such method");
    assert_eq!(error.kind(), "fault");
    assert_eq!(
        error.fault().map(|fault| fault.kind().to_string()),
        Some("unknown_method".to_owned())
    );
    fixture.shutdown().await;
}
