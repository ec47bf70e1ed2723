//! The set-up most tests open with, in one step: a [`LabFixture`] is a
//! queue of the test's own, a connection, a `Lab` server on that queue, and
//! a client stub for it.
//!
//! ```no_run
//! # async fn example() {
//! use rpc_tests::LabFixture;
//!
//! let fixture = LabFixture::start("round-trip").await;
//! let LabFixture { lab, control, .. } = &fixture;
//! assert_eq!(lab.add(40, 2).await.expect("add"), 42);
//! assert_eq!(control.handled.load(std::sync::atomic::Ordering::SeqCst), 1);
//! fixture.shutdown().await;
//! # }
//! ```
//!
//! Borrow its parts (as above) rather than move them out: a [`ServerHandle`]
//! dropped stops its server, and a [`TestQueue`] dropped deletes its queue.

use crate::{
    broker::{TestQueue, connect},
    lab::{LabClient, LabControl, lab_client, lab_server, serve_lab},
};
use rpc_runtime::{Client, ClientBuilder, Connection, ServerBuilder, ServerHandle};

/// A `Lab` server named `s1` (see [`LabFixtureBuilder::server_name`]) with a
/// prefetch of 8 (see [`LabFixtureBuilder::prefetch`]), serving a
/// [`TestQueue`] on a connection named after the test; a [`Client`] on the
/// same connection, and a [`LabClient`] of it for the queue.
///
/// Fields are declared in the order they drop (the reverse of the order they
/// are set up in): the stub first, the queue, deleted from the broker, last.
#[derive(Debug)]
pub struct LabFixture {
    /// The stub for [`LabFixture::queue`], on [`LabFixture::client`].
    pub lab: LabClient,
    /// The client the stub calls through.
    pub client: Client,
    /// The server, which [`LabFixture::shutdown`] shuts down gracefully.
    pub server: ServerHandle,
    /// How the test observes and steers the server.
    pub control: LabControl,
    /// The connection the server and the client share.
    pub connection: Connection,
    /// The queue the server consumes.
    pub queue: TestQueue,
}

impl LabFixture {
    /// The usual set-up, named `name` (the queue's prefix and the
    /// connection's name): server `s1`, prefetch 8, a default client.
    pub async fn start(name: &str) -> Self {
        Self::builder(name).start().await
    }

    /// The set-up with options; [`LabFixtureBuilder::start`] sets it up.
    pub fn builder(name: &str) -> LabFixtureBuilder {
        LabFixtureBuilder {
            name: name.to_owned(),
            server_name: "s1".to_owned(),
            prefetch: 8,
            connection: None,
            client: None,
            server: None,
        }
    }

    /// Shuts the server down gracefully; the rest is then dropped (the
    /// queue deleted).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Options of a [`LabFixture`], from [`LabFixture::builder`].
#[derive(Debug)]
pub struct LabFixtureBuilder {
    name: String,
    server_name: String,
    prefetch: u16,
    connection: Option<Connection>,
    client: Option<ClientBuilder>,
    server: Option<ServerBuilder>,
}

impl LabFixtureBuilder {
    /// The server's prefetch (default 8): how many requests it runs at once.
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }

    /// The server's name (default `s1`), which `whoami` and `hold` return.
    pub fn server_name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.server_name);
        self
    }

    /// Serves and calls on `connection` instead of a new connection named
    /// after the test.
    pub fn connection(mut self, connection: Connection) -> Self {
        self.connection = Some(connection);
        self
    }

    /// Builds the client with `client` instead of `Client::new`.
    pub fn client(mut self, client: ClientBuilder) -> Self {
        self.client = Some(client);
        self
    }

    /// Serves with `server` (its queue and prefetch set by the fixture)
    /// instead of the default builder: for interceptors, say.
    pub fn server(mut self, server: ServerBuilder) -> Self {
        self.server = Some(server);
        self
    }

    /// Sets the fixture up: when this returns, the server consumes the
    /// queue.
    pub async fn start(self) -> LabFixture {
        let queue = TestQueue::new(&self.name);
        let connection = match self.connection {
            Some(connection) => connection,
            None => connect(&self.name).await,
        };
        let control = LabControl::default();
        let server = match self.server {
            None => {
                serve_lab(
                    &connection,
                    &queue,
                    &self.server_name,
                    &control,
                    self.prefetch,
                )
                .await
            }
            Some(builder) => builder
                .queue(&queue.name)
                .prefetch(self.prefetch)
                .serve(&connection, lab_server(self.server_name.clone(), &control))
                .await
                .expect("serve"),
        };
        let (client, lab) = match self.client {
            Some(builder) => {
                let client = builder.build(&connection).await.expect("client");
                let lab = LabClient::new(client.clone()).with_queue(&queue.name);
                (client, lab)
            }
            None => lab_client(&connection, &queue).await,
        };
        LabFixture {
            lab,
            client,
            server,
            control,
            connection,
            queue,
        }
    }
}
