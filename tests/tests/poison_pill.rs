//! A request that kills every server that takes it (a "poison pill"): with
//! a delivery limit on a quorum request queue, the broker sets it aside in
//! the dead-letter queue after `limit + 1` deliveries, instead of passing it
//! on until no server is left. And one whose forged direct reply-to address
//! makes RabbitMQ close the server's connection: the server does not answer
//! it again when it comes back.

use futures_util::future::select_all;
use rpc_runtime::{
    Connection, QueueType, ServeError, Server,
    lapin::{
        BasicProperties,
        options::BasicGetOptions,
        types::{AMQPValue, FieldTable},
    },
};
use rpc_tests::{
    LabControl, LabFixture, LabImpl, LabServer, LabServerProcess, PATIENCE, TestQueue, amqp_url,
    connect, lab_client, lab_server, raw::Raw, within,
};
use std::{future::IntoFuture, time::Duration};

const LIMIT: u32 = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_kills_its_servers_is_set_aside_after_the_delivery_limit() {
    let queue = TestQueue::new("poison");
    let dead_letters = TestQueue::new("poison-dlq");
    let limit = LIMIT.to_string();
    let options = [
        "8",
        "--quorum",
        "--delivery-limit",
        &limit,
        "--dead-letter-queue",
        &dead_letters.name,
    ];
    let mut servers = Vec::new();
    for name in ["a", "b", "c", "d"] {
        servers.push((
            name,
            LabServerProcess::start_with(
                env!("CARGO_BIN_EXE_lab_server"),
                &amqp_url(),
                &queue.name,
                name,
                &options,
            )
            .await,
        ));
    }

    let connection = connect("poison-client").await;
    let (client, lab) = lab_client(&connection, &queue).await;
    let poison = tokio::spawn(lab.hold(666).into_future());

    // Each server that takes the request dies of it (the test kills it as
    // soon as the handler starts): the first delivery and `LIMIT` more.
    for _ in 0..=LIMIT {
        let (started, at, _) = within(
            PATIENCE,
            "a server to take the poison",
            select_all(
                servers
                    .iter_mut()
                    .map(|(_, server)| Box::pin(server.next_started())),
            ),
        )
        .await;
        assert_eq!(started, 666);
        let (_, mut victim) = servers.remove(at);
        victim.kill().await;
    }

    // Then the broker sets it aside, with its properties and why.
    let raw = Raw::open().await.expect("raw connection");
    let parked = within(PATIENCE, "the request in the dead-letter queue", async {
        loop {
            let got = raw
                .channel
                .basic_get(
                    dead_letters.name.as_str().into(),
                    BasicGetOptions::default(),
                )
                .await
                .expect("basic.get");
            if let Some(message) = got {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let properties = &parked.delivery.properties;
    assert_eq!(
        properties.kind().as_ref().map(|kind| kind.as_str()),
        Some("hold")
    );
    assert!(properties.correlation_id().is_some());
    let death = first_death(properties.headers().as_ref().expect("headers"));
    assert_eq!(
        death.inner().get("reason"),
        Some(&AMQPValue::LongString("delivery_limit".into())),
        "{death:?}"
    );
    assert_eq!(
        death.inner().get("queue"),
        Some(&AMQPValue::LongString(queue.name.as_str().into()))
    );

    // The last server lives on and serves the calls that follow; the
    // poisoned call never got a reply (it ends with its timeout).
    let [(survivor, _)] = servers.as_slice() else {
        panic!("one server left");
    };
    let answered = within(PATIENCE, "a call after the poison", lab.whoami()).await;
    assert_eq!(answered.expect("served"), *survivor);
    assert!(!poison.is_finished(), "the poisoned call got an answer");
    assert_eq!(client.pending_calls(), 1);
    poison.abort();
}

/// The first entry of a dead-lettered message's `x-death` header.
fn first_death(headers: &FieldTable) -> FieldTable {
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(deaths)) => match deaths.as_slice().first() {
            Some(AMQPValue::FieldTable(death)) => death.clone(),
            other => panic!("an x-death entry, not {other:?}"),
        },
        other => panic!("an x-death header, not {other:?}"),
    }
}

/// A `Lab` service nobody will call.
fn idle_lab() -> LabServer<LabImpl> {
    lab_server("s", &LabControl::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_limit_needs_a_quorum_queue() {
    let queue = TestQueue::new("poison-classic");
    let connection: Connection = connect("poison-classic").await;
    let served = Server::builder()
        .queue(&queue.name)
        .delivery_limit(3)
        .serve(&connection, idle_lab())
        .await;
    match served {
        Err(error @ ServeError::Config { .. }) => {
            assert!(error.to_string().contains("QueueType::Quorum"), "{error}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    // Nor is the request queue its own dead-letter queue.
    let served = Server::builder()
        .queue(&queue.name)
        .queue_type(QueueType::Quorum)
        .dead_letter_queue(&queue.name)
        .serve(&connection, idle_lab())
        .await;
    assert!(
        matches!(served, Err(ServeError::InvalidQueueName { .. })),
        "{served:?}"
    );
}

/// RabbitMQ decodes a direct reply-to address only when a reply is
/// published to it, and a forged one crashes the publishing channel: the
/// broker closes the server's whole connection (541 INTERNAL_ERROR). The
/// request comes back; answered again, it would close the connection again,
/// for ever. The server answers it once, whether with its reply or with a
/// fault: redelivered, it is set aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_forged_direct_reply_to_address_costs_the_connection_once() {
    let fixture = LabFixture::start("forged-reply-to").await;
    let raw = Raw::open().await.expect("raw connection");
    let body = rmp_serde::to_vec(&("forged",)).expect("arguments");
    let forged = || {
        BasicProperties::default()
            .with_type("echo".into())
            .with_correlation_id("forged-1".into())
            .with_reply_to("amq.rabbitmq.reply-to.AAAA.x".into())
    };
    // Answered with its reply; then one answered with a fault before it
    // could run (a content type the server refuses).
    let requests = [forged(), forged().with_content_type("text/plain".into())];
    for (n, properties) in requests.into_iter().enumerate() {
        raw.publish(&fixture.queue.name, &body, properties)
            .await
            .expect("publish");
        let lost = n as u64 + 1;
        within(
            PATIENCE,
            "the server's connection to be lost and made again",
            async {
                while fixture.connection.reconnections() < lost {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
        )
        .await;
        // Served again, the redelivered request set aside first (it is at
        // the head of the queue).
        let after = format!("after-{n}");
        let echoed = within(PATIENCE, "a call after", fixture.lab.echo(after.clone()))
            .await
            .expect("served after the reconnection");
        assert_eq!(echoed, after);
    }
    // Had a request been answered again, the connection would have been
    // lost again, and the request would be unsettled, not gone.
    fixture.server.shutdown().await;
    assert_eq!(
        raw.message_count(&fixture.queue.name).await.expect("count"),
        0,
        "the forged requests were set aside"
    );
    assert_eq!(fixture.control.echo_reruns(), 0, "nothing ran twice");
    assert_eq!(fixture.connection.reconnections(), 2);
}
