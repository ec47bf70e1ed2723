//! Changing a service while old clients and servers still run (PROTOCOL.md
//! §6): two versions of one trait, each side of each version talking to the
//! other version.
//!
//! - `v1::Greeter`: `greet(name)`.
//! - `v2::Greeter`, compatible: `greet(name, title: Option<String>)`, a
//!   trailing `Option` argument, and a new method `farewell`.
//! - `v3::Greeter`, incompatible: `greet(times: u32)`, an argument whose type
//!   changed.

use rpc_runtime::{Client, RpcError, Server, ServerHandle};
use rpc_tests::{PATIENCE, TestQueue, connect, within};

mod v1 {
    #[rpc_runtime::rpc_service]
    pub(crate) trait Greeter {
        async fn greet(&self, name: String) -> String;
    }

    pub(crate) struct Impl;

    impl Greeter for Impl {
        async fn greet(&self, name: String) -> String {
            format!("v1: hello {name}")
        }
    }
}

mod v2 {
    #[rpc_runtime::rpc_service]
    pub(crate) trait Greeter {
        async fn greet(&self, name: String, title: Option<String>) -> String;
        async fn farewell(&self, name: String) -> String;
    }

    pub(crate) struct Impl;

    impl Greeter for Impl {
        async fn greet(&self, name: String, title: Option<String>) -> String {
            match title {
                Some(title) => format!("v2: hello {title} {name}"),
                None => format!("v2: hello {name}"),
            }
        }

        async fn farewell(&self, name: String) -> String {
            format!("v2: goodbye {name}")
        }
    }
}

mod v3 {
    #[rpc_runtime::rpc_service]
    pub(crate) trait Greeter {
        async fn greet(&self, times: u32) -> String;
    }

    pub(crate) struct Impl;

    impl Greeter for Impl {
        async fn greet(&self, times: u32) -> String {
            "hello ".repeat(times as usize)
        }
    }
}

/// The fault kind and message of a call that failed with one.
fn fault<T: std::fmt::Debug>(result: Result<T, RpcError>) -> (String, String) {
    match result {
        Err(RpcError::Fault { fault, .. }) => {
            (fault.kind().to_string(), fault.message().to_owned())
        }
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_option_argument_and_a_new_method_are_compatible_both_ways() {
    let connection = connect("compatibility").await;
    let client = Client::new(&connection).await.expect("client");
    let (old_queue, new_queue) = (TestQueue::new("greeter-v1"), TestQueue::new("greeter-v2"));
    let old_server: ServerHandle = Server::builder()
        .queue(&old_queue.name)
        .serve(&connection, v1::GreeterServer::new(v1::Impl))
        .await
        .expect("serve v1");
    let new_server = Server::builder()
        .queue(&new_queue.name)
        .serve(&connection, v2::GreeterServer::new(v2::Impl))
        .await
        .expect("serve v2");

    // An old client, a new server: the argument it does not know is `None`.
    let old_to_new = v1::GreeterClient::new(client.clone()).with_queue(&new_queue.name);
    let greeted = within(PATIENCE, "v1 -> v2", old_to_new.greet("Ada".into())).await;
    assert_eq!(greeted.expect("greet"), "v2: hello Ada");

    // A new client, an old server: a `None` it does not know is ignored...
    let new_to_old = v2::GreeterClient::new(client.clone()).with_queue(&old_queue.name);
    let greeted = within(PATIENCE, "v2 -> v1", new_to_old.greet("Ada".into(), None)).await;
    assert_eq!(greeted.expect("greet"), "v1: hello Ada");
    // ... a value it would drop is refused, saying so...
    let titled = within(
        PATIENCE,
        "v2 -> v1 with a title",
        new_to_old.greet("Ada".into(), Some("Dr".into())),
    )
    .await;
    let (kind, message) = fault(titled);
    assert_eq!(kind, "bad_request");
    assert!(
        message.contains("argument 2 holds a value") && message.contains("upgrade the server"),
        "{message}"
    );
    // ... and a method it does not have is `unknown_method`.
    let farewell = within(
        PATIENCE,
        "v2 -> v1 farewell",
        new_to_old.farewell("Ada".into()),
    )
    .await;
    assert_eq!(fault(farewell).0, "unknown_method");

    // Each version with itself, for completeness.
    let new_to_new = v2::GreeterClient::new(client.clone()).with_queue(&new_queue.name);
    let titled = new_to_new.greet("Ada".into(), Some("Dr".into())).await;
    assert_eq!(titled.expect("greet"), "v2: hello Dr Ada");

    old_server.shutdown().await;
    new_server.shutdown().await;
    connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_argument_type_is_refused_both_ways_naming_the_argument() {
    let connection = connect("compatibility-broken").await;
    let client = Client::new(&connection).await.expect("client");
    let (old_queue, changed_queue) = (TestQueue::new("greeter-v1b"), TestQueue::new("greeter-v3"));
    let old_server = Server::builder()
        .queue(&old_queue.name)
        .serve(&connection, v1::GreeterServer::new(v1::Impl))
        .await
        .expect("serve v1");
    let changed_server = Server::builder()
        .queue(&changed_queue.name)
        .serve(&connection, v3::GreeterServer::new(v3::Impl))
        .await
        .expect("serve v3");

    let old_to_changed = v1::GreeterClient::new(client.clone()).with_queue(&changed_queue.name);
    let (kind, message) =
        fault(within(PATIENCE, "v1 -> v3", old_to_changed.greet("Ada".into())).await);
    assert_eq!(kind, "bad_request");
    assert!(message.contains("argument 1 (`times`)"), "{message}");

    let changed_to_old = v3::GreeterClient::new(client.clone()).with_queue(&old_queue.name);
    let (kind, message) = fault(within(PATIENCE, "v3 -> v1", changed_to_old.greet(2)).await);
    assert_eq!(kind, "bad_request");
    assert!(message.contains("argument 1 (`name`)"), "{message}");

    old_server.shutdown().await;
    changed_server.shutdown().await;
    connection.close().await;
}
