//! A TCP relay in front of the broker that can cut every connection through
//! it at once: a connection loss that touches nothing else on the broker.

use crate::amqp_url;
use rpc_runtime::lapin::uri::AMQPUri;
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{net::TcpStream, task::JoinHandle};

/// The relay; it stops when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    upstream: AMQPUri,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Relay {
    /// Starts relaying to the broker of `AMQP_URL`.
    pub async fn start() -> Self {
        let upstream: AMQPUri = amqp_url().parse().expect("AMQP_URL parses");
        let target = format!("{}:{}", upstream.authority.host, upstream.authority.port);
        let listener = crate::local_listener().await;
        let addr = listener.local_addr().expect("local addr");
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = links.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut broker) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut broker).await;
                    }
                });
                accepted.lock().expect("lock").push(link);
            }
        });
        Self {
            addr,
            upstream,
            links,
            acceptor,
        }
    }

    /// An AMQP URL that reaches the broker through the relay.
    pub fn url(&self) -> String {
        let info = &self.upstream.authority.userinfo;
        let vhost = self.upstream.vhost.replace('%', "%25").replace('/', "%2f");
        format!(
            "amqp://{}:{}@{}/{}",
            info.username, info.password, self.addr, vhost
        )
    }

    /// Connects through the relay, reconnecting quickly after a cut.
    pub async fn connect(&self) -> rpc_runtime::Connection {
        rpc_runtime::Connection::builder(self.url())
            .reconnect_delay(Duration::from_millis(20), Duration::from_millis(200))
            .connect()
            .await
            .expect("connect through the relay")
    }

    /// Cuts every connection through the relay; new ones still get through.
    pub fn cut(&self) {
        for link in self.links.lock().expect("lock").drain(..) {
            link.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
