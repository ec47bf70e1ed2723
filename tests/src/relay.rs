//! A TCP relay in front of the broker that can cut every connection through
//! it at once (a connection loss that touches nothing else on the broker),
//! hold the traffic from its clients to the broker (a broker that stops
//! reading, as under a resource alarm), or hold it both ways (a broker
//! frozen, or cut off by a network that drops packets), or drop the
//! broker's publisher confirms (a broker that takes requests and never
//! says so).

use crate::broker::amqp_url;
use rpc_runtime::lapin::uri::AMQPUri;
use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
    task::JoinHandle,
};

/// The relay; it stops when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    upstream: AMQPUri,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
    held: watch::Sender<bool>,
    frozen: watch::Sender<bool>,
    confirms: Arc<ConfirmDrops>,
    /// Bytes clients sent that wait in the relay, held or frozen.
    waiting: Arc<AtomicUsize>,
    /// Bytes clients sent that the relay passed on to the broker.
    forwarded: Arc<AtomicUsize>,
}

/// How many of the broker's `basic.ack` frames to drop, and how many were.
#[derive(Debug, Default)]
struct ConfirmDrops {
    to_drop: AtomicUsize,
    dropped: AtomicUsize,
}

impl ConfirmDrops {
    /// Whether to drop the next `basic.ack`; counts it if so.
    fn take_one(&self) -> bool {
        let taken = self
            .to_drop
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if taken {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
        taken
    }
}

impl Relay {
    /// Starts relaying to the broker of `AMQP_URL`.
    pub async fn start() -> Self {
        let upstream: AMQPUri = amqp_url().parse().expect("AMQP_URL parses");
        let target = format!("{}:{}", upstream.authority.host, upstream.authority.port);
        let listener = crate::broker::local_listener().await;
        let addr = listener.local_addr().expect("local addr");
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accepted = links.clone();
        let (held, holding) = watch::channel(false);
        let (frozen, freezing) = watch::channel(false);
        let confirms = Arc::new(ConfirmDrops::default());
        let dropping = confirms.clone();
        let waiting = Arc::new(AtomicUsize::new(0));
        let counting = waiting.clone();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let passing = forwarded.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                let holding = holding.clone();
                let freezing = freezing.clone();
                let dropping = dropping.clone();
                let counting = counting.clone();
                let passing = passing.clone();
                let link = tokio::spawn(async move {
                    if let Ok(broker) = TcpStream::connect(&target).await {
                        let (from_client, to_client) = client.into_split();
                        let (from_broker, to_broker) = broker.into_split();
                        tokio::select! {
                            () = pump(
                                from_client,
                                to_broker,
                                vec![holding, freezing.clone()],
                                &counting,
                                &passing,
                            ) => {}
                            () = pump_frames(from_broker, to_client, freezing, dropping) => {}
                        }
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
            held,
            frozen,
            confirms,
            waiting,
            forwarded,
        }
    }

    /// Drops the broker's next `count` publisher confirms (`basic.ack`
    /// frames) to any client through the relay: requests it took, and never
    /// said so.
    pub fn drop_confirms(&self, count: usize) {
        self.confirms.to_drop.store(count, Ordering::SeqCst);
    }

    /// How many publisher confirms the relay has dropped.
    pub fn dropped_confirms(&self) -> usize {
        self.confirms.dropped.load(Ordering::SeqCst)
    }

    /// Freezes (`true`) or thaws (`false`) every connection through the
    /// relay: nothing passes either way, heartbeats included, as when the
    /// broker's process is stopped (SIGSTOP); held bytes are forwarded on
    /// thawing, in order.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }

    /// Holds (`true`) or releases (`false`) what clients send to the broker;
    /// held bytes are forwarded on release, in order.
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

    /// How many bytes clients sent that wait in the relay (held or frozen;
    /// those of a link cut meanwhile stay counted): a test waits for it to
    /// grow to know that a client wrote something.
    pub fn held_bytes(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// How many bytes clients sent that the relay passed on to the broker,
    /// all connections together: once a client's call is answered, all it
    /// wrote before that call's request is counted.
    pub fn forwarded_bytes(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
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

/// Copies `from` into `to` until either ends. While any of `holds` says so,
/// what is read waits in the relay (counted in `waiting`), up to
/// [`MOST_WAITING`] bytes, after which the relay stops reading, as a broker
/// that blocks a publisher does; it is forwarded in order once none does.
/// What reaches `to` is counted in `forwarded`.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut holds: Vec<watch::Receiver<bool>>,
    waiting: &AtomicUsize,
    forwarded: &AtomicUsize,
) {
    const MOST_WAITING: usize = 256 * 1024;
    let mut buffer = vec![0; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let held = |holds: &[watch::Receiver<bool>]| holds.iter().any(|hold| *hold.borrow());
    loop {
        if !pending.is_empty() && !held(&holds) {
            let written = to.write_all(&pending).await;
            waiting.fetch_sub(pending.len(), Ordering::SeqCst);
            if written.is_err() {
                return;
            }
            forwarded.fetch_add(pending.len(), Ordering::SeqCst);
            pending.clear();
        }
        let read = if !held(&holds) {
            from.read(&mut buffer).await
        } else if pending.len() < MOST_WAITING {
            tokio::select! {
                read = from.read(&mut buffer) => read,
                released = released(&mut holds) => {
                    if !released {
                        return;
                    }
                    continue;
                }
            }
        } else {
            if !released(&mut holds).await {
                return;
            }
            continue;
        };
        let read = match read {
            Ok(0) | Err(_) => {
                // What was sent before the end still goes, once released.
                if !pending.is_empty()
                    && released(&mut holds).await
                    && to.write_all(&pending).await.is_ok()
                {
                    forwarded.fetch_add(pending.len(), Ordering::SeqCst);
                }
                waiting.fetch_sub(pending.len(), Ordering::SeqCst);
                return;
            }
            Ok(read) => read,
        };
        // Held meanwhile: what was read waits too.
        if held(&holds) || !pending.is_empty() {
            pending.extend_from_slice(&buffer[..read]);
            waiting.fetch_add(read, Ordering::SeqCst);
        } else if to.write_all(&buffer[..read]).await.is_err() {
            return;
        } else {
            forwarded.fetch_add(read, Ordering::SeqCst);
        }
    }
}

/// Waits until none of `holds` says to hold; `false` if the relay is gone.
async fn released(holds: &mut [watch::Receiver<bool>]) -> bool {
    for hold in holds {
        if hold.wait_for(|held| !held).await.is_err() {
            return false;
        }
    }
    true
}

/// Copies the broker's frames from `from` into `to` until either ends,
/// waiting while `frozen` says so, and leaving out the `basic.ack` frames
/// `confirms` says to drop.
async fn pump_frames(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut frozen: watch::Receiver<bool>,
    confirms: Arc<ConfirmDrops>,
) {
    // An AMQP frame: type (1 byte), channel (2), payload size (4), the
    // payload, and a frame-end byte. A method frame's payload starts with
    // its class and method ids: `basic.ack` is 60, 80.
    const HEADER: usize = 7;
    let mut pending = Vec::new();
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        pending.extend_from_slice(&buffer[..read]);
        let mut out = Vec::with_capacity(pending.len());
        let mut start = 0;
        while pending.len() - start >= HEADER {
            let frame = &pending[start..];
            let size = u32::from_be_bytes([frame[3], frame[4], frame[5], frame[6]]) as usize;
            let length = HEADER + size + 1;
            if frame.len() < length {
                break;
            }
            let is_ack = frame[0] == 1 && size >= 4 && frame[7..11] == [0, 60, 0, 80];
            if !(is_ack && confirms.take_one()) {
                out.extend_from_slice(&frame[..length]);
            }
            start += length;
        }
        pending.drain(..start);
        if frozen.wait_for(|frozen| !frozen).await.is_err() {
            return;
        }
        if to.write_all(&out).await.is_err() {
            return;
        }
    }
}
