//! Peer `amqprs`: a hand-written RPC client and server on amqprs, doing what
//! `raw.rs` does on lapin over the same wire format: `raw.rs`'s MessagePack
//! arguments and `{"ok": ..}` replies, the same properties, the same prefetch,
//! an exclusive callback queue consumed without acks, publisher confirms on
//! requests (awaited before the reply) and `mandatory`, each request
//! acknowledged once its reply is published, one task per request on the
//! server. The client multiplexes its calls over one channel with a map of
//! correlation id to oneshot.
//!
//! What amqprs makes different: it has no confirmation future per
//! publication, only a channel callback for `basic.ack`, `basic.nack` and
//! `basic.return`. So the client numbers its publications itself, as the
//! broker does (from 1 after `confirm.select`), under an async lock held
//! while amqprs queues the frames, so that the numbers follow the order on
//! the wire; the callback resolves each number's oneshot (one, or every one
//! up to it with `multiple`), and a returned request, found by its
//! correlation id, fails its call. The broker's URL is read with lapin's
//! parser, which decodes the `%2f` of the default vhost.

use crate::{
    headers,
    raw::{CONTENT_TYPE, Reply, decode, encode},
    service::{FIB_N, Payload},
};
use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, FieldTable, FieldValue, LongStr, Nack, Return,
    ShortStr,
    callbacks::ChannelCallback,
    channel::{
        BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments,
        Channel, ConfirmSelectArguments, ConsumerMessage, QueueDeclareArguments,
    },
    connection::{Connection, OpenConnectionArguments},
};
use async_trait::async_trait;
use rpc_examples::fib;
use rpc_runtime::lapin::uri::{AMQPScheme, AMQPUri};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::oneshot;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What a returned request's call fails with, as `raw.rs`'s.
const RETURNED: &str = "no such queue";

/// amqprs's connection arguments for an AMQP URL.
fn arguments(url: &str) -> Result<OpenConnectionArguments, Error> {
    let uri: AMQPUri = url.parse()?;
    if uri.scheme != AMQPScheme::AMQP {
        return Err("the amqprs peer is built without TLS: amqp:// only".into());
    }
    let mut arguments = OpenConnectionArguments::new(
        &uri.authority.host,
        uri.authority.port,
        &uri.authority.userinfo.username,
        &uri.authority.userinfo.password,
    );
    arguments.virtual_host(&uri.vhost);
    if let Some(heartbeat) = uri.query.heartbeat {
        arguments.heartbeat(heartbeat);
    }
    Ok(arguments)
}

/// Calls waiting for their reply, by correlation id: the reply's body, or
/// [`RETURNED`].
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Vec<u8>, &'static str>>>>>;

/// Requests waiting for their confirm, by publish sequence number: `true`
/// for `basic.ack`, `false` for `basic.nack`.
type Confirms = Arc<Mutex<BTreeMap<u64, oneshot::Sender<bool>>>>;

/// The client channel's callback: confirms and returned requests.
struct Callback {
    confirms: Confirms,
    waiting: Waiting,
}

impl Callback {
    fn confirm(&self, tag: u64, multiple: bool, acked: bool) {
        let mut confirms = self.confirms.lock().expect("lock");
        if multiple {
            let later = confirms.split_off(&tag.saturating_add(1));
            for (_, sender) in std::mem::replace(&mut *confirms, later) {
                let _ = sender.send(acked);
            }
        } else if let Some(sender) = confirms.remove(&tag) {
            let _ = sender.send(acked);
        }
    }
}

#[async_trait]
impl ChannelCallback for Callback {
    async fn close(
        &mut self,
        _channel: &Channel,
        _close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        // (sic: amqprs's spelling)
        self.confirm(ack.delivery_tag(), ack.mutiple(), true);
    }

    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        self.confirm(nack.delivery_tag(), nack.multiple(), false);
    }

    /// The broker returns a `mandatory` request before it confirms it, on
    /// the same channel, so the call learns of it before its confirm.
    async fn publish_return(
        &mut self,
        _channel: &Channel,
        _return: Return,
        properties: BasicProperties,
        _body: Vec<u8>,
    ) {
        let sender = properties
            .correlation_id()
            .and_then(|id| self.waiting.lock().expect("lock").remove(id));
        if let Some(sender) = sender {
            let _ = sender.send(Err(RETURNED));
        }
    }
}

impl Drop for Callback {
    /// amqprs drops the callback when the channel closes: the calls waiting
    /// for a confirm or a reply fail instead of waiting forever.
    fn drop(&mut self) {
        self.confirms.lock().expect("lock").clear();
        self.waiting.lock().expect("lock").clear();
    }
}

/// The hand-written client.
pub(crate) struct AmqprsClient {
    _connection: Connection,
    channel: Channel,
    reply_to: String,
    waiting: Waiting,
    confirms: Confirms,
    /// The next publish sequence number, locked from its choice until the
    /// request is in amqprs's outgoing queue, which the wire follows.
    sequence: tokio::sync::Mutex<u64>,
    /// Whether the channel is in confirm mode (`BENCH_CONFIRMS`).
    confirmed: bool,
    /// Whether each request carries a `traceparent` (`headers.rs`).
    traced: bool,
    prefix: String,
    next: AtomicU64,
    queue: String,
}

impl AmqprsClient {
    pub(crate) async fn connect(url: &str, queue: &str, traced: bool) -> Result<Self, Error> {
        let connection = Connection::open(&arguments(url)?).await?;
        let channel = connection.open_channel(None).await?;
        let waiting: Waiting = Arc::default();
        let confirms: Confirms = Arc::default();
        // Before `confirm.select`, so that no confirm finds it missing.
        channel
            .register_callback(Callback {
                confirms: confirms.clone(),
                waiting: waiting.clone(),
            })
            .await?;
        let confirm_mode = crate::service::raw_confirms();
        if confirm_mode {
            channel
                .confirm_select(ConfirmSelectArguments::default())
                .await?;
        }
        let (reply_to, _, _) = channel
            .queue_declare(
                QueueDeclareArguments::exclusive_server_named()
                    .auto_delete(true)
                    .finish(),
            )
            .await?
            .ok_or("no queue.declare-ok for the callback queue")?;
        let (_, mut deliveries) = channel
            .basic_consume_rx(
                BasicConsumeArguments::new(&reply_to, "")
                    .auto_ack(true)
                    .finish(),
            )
            .await?;
        let replies = waiting.clone();
        tokio::spawn(async move {
            while let Some(message) = deliveries.recv().await {
                let sender = message
                    .basic_properties
                    .as_ref()
                    .and_then(BasicProperties::correlation_id)
                    .and_then(|id| replies.lock().expect("lock").remove(id));
                if let (Some(sender), Some(body)) = (sender, message.content) {
                    let _ = sender.send(Ok(body));
                }
            }
        });
        Ok(Self {
            _connection: connection,
            channel,
            reply_to,
            waiting,
            confirms,
            sequence: tokio::sync::Mutex::new(1),
            confirmed: confirm_mode,
            traced,
            prefix: format!("{}.", uuid::Uuid::new_v4().simple()),
            next: AtomicU64::new(0),
            queue: queue.to_owned(),
        })
    }

    async fn call(&self, method: &str, body: Vec<u8>) -> Result<Vec<u8>, Error> {
        let id = format!(
            "{}{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (sender, reply) = oneshot::channel();
        self.waiting
            .lock()
            .expect("lock")
            .insert(id.clone(), sender);
        // Built in place: amqprs's `finish` would copy them.
        let mut properties = BasicProperties::default();
        properties
            .with_content_type(CONTENT_TYPE)
            .with_message_type(method)
            .with_correlation_id(&id)
            .with_reply_to(&self.reply_to);
        if crate::service::expiration() {
            properties.with_expiration("30000");
        }
        let deadline = headers::deadline();
        if deadline || self.traced {
            let mut table = FieldTable::new();
            if self.traced {
                let traceparent = LongStr::try_from(headers::traceparent())?;
                table.insert(
                    ShortStr::try_from(headers::TRACEPARENT)?,
                    FieldValue::S(traceparent),
                );
            }
            if deadline {
                table.insert(
                    ShortStr::try_from(headers::DEADLINE)?,
                    FieldValue::l(headers::deadline_millis()),
                );
            }
            properties.with_headers(table);
        }
        let publish = BasicPublishArguments {
            exchange: String::new(),
            routing_key: self.queue.clone(),
            mandatory: true,
            immediate: false,
        };
        if !self.confirmed {
            if let Err(error) = self.channel.basic_publish(properties, body, publish).await {
                self.waiting.lock().expect("lock").remove(&id);
                return Err(error.into());
            }
            return Ok(reply.await??);
        }
        let (confirmed, confirmation) = oneshot::channel();
        {
            let mut sequence = self.sequence.lock().await;
            let tag = *sequence;
            // Before the publication: its confirm may come before it returns.
            self.confirms.lock().expect("lock").insert(tag, confirmed);
            if let Err(error) = self.channel.basic_publish(properties, body, publish).await {
                self.confirms.lock().expect("lock").remove(&tag);
                self.waiting.lock().expect("lock").remove(&id);
                return Err(error.into());
            }
            *sequence += 1;
        }
        if !confirmation.await? {
            self.waiting.lock().expect("lock").remove(&id);
            return Err("the broker refused the request (basic.nack)".into());
        }
        Ok(reply.await??)
    }

    pub(crate) async fn fib(&self) -> Result<u64, Error> {
        let body = self.call("fib", encode(&(FIB_N,))).await?;
        decode(&body)
    }

    pub(crate) async fn echo(&self, payload: Payload) -> Result<Payload, Error> {
        let body = self.call("echo", encode(&(payload,))).await?;
        decode(&body)
    }
}

/// Starts the hand-written server; it runs until the process exits.
pub(crate) async fn serve(url: &str, queue: &str, prefetch: u16) -> Result<(), Error> {
    let connection = Connection::open(&arguments(url)?).await?;
    let channel = connection.open_channel(None).await?;
    channel
        .basic_qos(BasicQosArguments::new(0, prefetch, false))
        .await?;
    channel
        .queue_declare(QueueDeclareArguments::durable_client_named(queue))
        .await?;
    // Manual acks: amqprs's default.
    let (_, mut deliveries) = channel
        .basic_consume_rx(BasicConsumeArguments::new(queue, ""))
        .await?;
    // As `raw.rs`: the consume loop in a task of its own, one task per
    // request so that up to `prefetch` run at once.
    tokio::spawn(async move {
        // Dropping amqprs's connection or channel closes it.
        let _connection = connection;
        while let Some(message) = deliveries.recv().await {
            tokio::spawn(handle(channel.clone(), message));
        }
    });
    Ok(())
}

async fn handle(channel: Channel, message: ConsumerMessage) {
    // amqprs fills all three for a delivery to a consumer.
    let (Some(deliver), Some(properties), Some(body)) =
        (message.deliver, message.basic_properties, message.content)
    else {
        return;
    };
    if let Some(table) = properties.headers() {
        for (name, value) in table.as_ref() {
            match (name.as_ref().as_str(), value) {
                (headers::TRACEPARENT, FieldValue::S(traceparent)) => {
                    let text = traceparent.as_ref().as_bytes();
                    std::hint::black_box(headers::continue_trace(text));
                }
                (headers::DEADLINE, FieldValue::l(deadline)) => {
                    std::hint::black_box(deadline);
                }
                _ => {}
            }
        }
    }
    let reply = match properties.message_type().map(String::as_str) {
        Some("fib") => rmp_serde::from_slice::<(u32,)>(&body)
            .ok()
            .and_then(|(n,)| fib(n).ok())
            .map(|value| encode(&Reply::Ok(value))),
        Some("echo") => rmp_serde::from_slice::<(Payload,)>(&body)
            .ok()
            .map(|(payload,)| encode(&Reply::Ok(payload))),
        _ => None,
    };
    if let (Some(reply), Some(reply_to)) = (reply, properties.reply_to()) {
        let mut reply_properties = BasicProperties::default();
        reply_properties.with_content_type(CONTENT_TYPE);
        if let Some(id) = properties.correlation_id() {
            reply_properties.with_correlation_id(id);
        }
        let _ = channel
            .basic_publish(
                reply_properties,
                reply,
                BasicPublishArguments::new("", reply_to),
            )
            .await;
    }
    let _ = channel
        .basic_ack(BasicAckArguments::new(deliver.delivery_tag(), false))
        .await;
}
