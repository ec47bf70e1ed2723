//! The broker the tests share: its address, connections to it, names no
//! other test uses, and queues that delete themselves.
//!
//! Tests never stop, reset or reconfigure this broker: they declare uniquely
//! named queues and delete them when done (destructive tests run a node of
//! their own, see [`crate::private_broker`]).

use crate::raw;
use rpc_runtime::{Connection, ConnectionBuilder};
use std::time::Duration;
use tokio::net::TcpListener;

/// The broker the tests use: `AMQP_URL`, or the local default.
pub fn amqp_url() -> String {
    rpc_examples::amqp_url()
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    format!("rpc-test.{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// A connection builder for the broker, naming the connection `name` (give
/// it a [`unique`] name to find the connection on the broker), with short
/// reconnection delays.
pub fn connection_builder(name: &str) -> ConnectionBuilder {
    Connection::builder(amqp_url())
        .name(name)
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(500))
}

/// Connects to the broker with [`connection_builder`].
pub async fn connect(name: &str) -> Connection {
    connection_builder(name)
        .connect()
        .await
        .expect("the broker must be reachable at AMQP_URL (run scripts/test.sh)")
}

/// A queue name that is deleted from the broker when the guard drops,
/// whatever the test's outcome.
#[derive(Debug)]
pub struct TestQueue {
    pub name: String,
}

impl TestQueue {
    pub fn new(prefix: &str) -> Self {
        Self {
            name: unique(prefix),
        }
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop may run inside a runtime, which cannot block on another one:
        // delete from a thread of our own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(raw::delete_queue(&name))
        })
        .join();
        if !matches!(deleted, Ok(Ok(()))) {
            eprintln!("warning: could not delete test queue {}", self.name);
        }
    }
}

/// Binds a listener on an ephemeral local port (a peer that is not the
/// broker, or a port where nothing answers once the listener is dropped).
pub async fn local_listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}
