//! The caller's identity: a client sends its connection's user as the
//! request's `user_id`, which RabbitMQ checks against the user of the
//! connection that publishes it. A handler can trust it: a request claiming
//! another user's identity never reaches it, unless the publisher has the
//! `impersonator` tag (which PROTOCOL.md says never to grant to callers).
//!
//! Against a private node, which the test gives users of its own.

use futures_util::StreamExt;
use rpc_runtime::{
    Client, Connection, Server,
    lapin::{self, BasicProperties, ConnectionProperties, options::BasicPublishOptions},
};
use rpc_tests::{
    LabClient, LabControl, PATIENCE, lab_server, private_broker::PrivateBroker, raw, unique, within,
};
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_see_the_callers_user_which_the_broker_vouches_for() {
    let broker = PrivateBroker::start().await;
    broker.add_user("alice", "alice-pw", &[]).await;
    broker
        .add_user("proxy", "proxy-pw", &["impersonator"])
        .await;
    // The queue goes with the private node.
    let queue = unique("identity");
    let server_connection = Connection::connect(&broker.url()).await.expect("connect");
    let control = LabControl::default();
    let server = Server::builder()
        .queue(&queue)
        .serve(&server_connection, lab_server("s1", &control))
        .await
        .expect("serve");

    // A client connected as alice calls as alice.
    let alice = Connection::connect(&broker.url_for("alice", "alice-pw"))
        .await
        .expect("alice connects");
    assert_eq!(alice.user().as_deref(), Some("alice"));
    let lab = LabClient::new(Client::new(&alice).await.expect("client")).with_queue(&queue);
    let report = within(PATIENCE, "a call", lab.context())
        .await
        .expect("context");
    assert_eq!(report.user_id.as_deref(), Some("alice"));

    // Unless it says not to.
    let anonymous = LabClient::new(
        Client::builder()
            .send_user_id(false)
            .build(&alice)
            .await
            .expect("client"),
    )
    .with_queue(&queue);
    let report = anonymous.context().await.expect("context");
    assert_eq!(report.user_id, None);
    let handled = control.handled.load(Ordering::SeqCst);

    // Alice claims to be the guest: the broker refuses the publication
    // (closing the channel with 406 PRECONDITION_FAILED), and no handler
    // ever sees it.
    let forger = lapin::Connection::connect(
        &broker.url_for("alice", "alice-pw"),
        ConnectionProperties::default(),
    )
    .await
    .expect("connect");
    // The broker's refusal closes the channel; lapin reports the reason as
    // a connection event. (A call on the channel may meet it only as
    // "invalid channel state: Closing", depending on timing.)
    let mut events = forger.events_listener();
    let channel = forger.create_channel().await.expect("channel");
    let (reply_to, _replies) = raw::reply_queue_on(&channel).await.expect("reply queue");
    let forged = BasicProperties::default()
        .with_type("context".into())
        .with_correlation_id("forged-1".into())
        .with_reply_to(reply_to.as_str().into())
        .with_user_id("guest".into());
    // Whether the publish itself already fails depends on timing too.
    let _ = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &[0x90],
            forged,
        )
        .await;
    let closed = within(PATIENCE, "the broker's refusal", async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(error)) => break error.to_string(),
                Some(_) => {}
                None => panic!("the connection's events ended without the refusal"),
            }
        }
    })
    .await;
    assert!(closed.contains("user_id"), "{closed}");
    assert!(
        closed.contains("PRECONDITION_FAILED") || closed.contains("406"),
        "{closed}"
    );
    // A call made after it is answered: the forged request came before it,
    // and never ran.
    assert!(lab.context().await.is_ok());
    assert_eq!(control.handled.load(Ordering::SeqCst), handled + 1);

    // A user with the impersonator tag may claim anyone: never grant it to
    // callers.
    let proxy = lapin::Connection::connect(
        &broker.url_for("proxy", "proxy-pw"),
        ConnectionProperties::default(),
    )
    .await
    .expect("connect");
    let channel = proxy.create_channel().await.expect("channel");
    let (reply_to, mut replies) = raw::reply_queue_on(&channel).await.expect("reply queue");
    let impersonated = BasicProperties::default()
        .with_type("context".into())
        .with_correlation_id("impersonated-1".into())
        .with_reply_to(reply_to.as_str().into())
        .with_user_id("alice".into());
    channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &[0x90],
            impersonated,
        )
        .await
        .expect("publish")
        .await
        .expect("written");
    let (_, body) = raw::next_reply(&mut replies).await;
    let reply: std::collections::HashMap<String, rpc_tests::ContextReport> =
        rmp_serde::from_slice(&body).expect("an ok reply");
    assert_eq!(reply["ok"].user_id.as_deref(), Some("alice"));

    server.shutdown().await;
}
