//! Peer A: the framework's generated client and server.

use crate::service::{BenchClient, BenchImpl, BenchServer, FIB_N, Payload};
use rpc_runtime::{Client, Connection, Server, ServerHandle};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The generated client, with the connection it lives on.
pub(crate) struct FrameworkClient {
    _connection: Connection,
    client: BenchClient,
}

impl FrameworkClient {
    pub(crate) async fn connect(url: &str, queue: &str) -> Result<Self, Error> {
        let connection = Connection::connect(url).await?;
        let client = BenchClient::new(Client::new(&connection).await?).with_queue(queue);
        Ok(Self {
            _connection: connection,
            client,
        })
    }

    pub(crate) async fn fib(&self) -> Result<u64, Error> {
        Ok(self.client.fib(FIB_N).await?)
    }

    pub(crate) async fn echo(&self, payload: Payload) -> Result<Payload, Error> {
        Ok(self.client.echo(payload).await?)
    }
}

/// Serves the benchmark service on `queue`.
pub(crate) async fn serve(url: &str, queue: &str, prefetch: u16) -> Result<ServerHandle, Error> {
    let connection = Connection::connect(url).await?;
    Ok(Server::builder()
        .queue(queue)
        .prefetch(prefetch)
        .serve(&connection, BenchServer::new(BenchImpl))
        .await?)
}
