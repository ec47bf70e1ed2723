//! Peer B: a hand-written RPC client and server on raw lapin, doing the same
//! work as the framework over the same wire format: MessagePack arguments and
//! `{"ok": ..}` replies, the same properties, the same prefetch, an exclusive
//! callback queue, publisher confirms on requests (awaited before the reply,
//! as the lapin examples do) and `mandatory`. The client multiplexes its calls
//! over one channel with a map of correlation id to oneshot.

use crate::{
    headers,
    service::{FIB_N, Payload},
};
use futures_util::StreamExt;
use rpc_examples::fib;
use rpc_runtime::lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties,
    message::Delivery,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
        ConfirmSelectOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};
use tokio::sync::oneshot;

pub(crate) const CONTENT_TYPE: &str = "application/msgpack";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A reply body: a map with exactly one key.
#[derive(Serialize, Deserialize)]
pub(crate) enum Reply<T> {
    #[serde(rename = "ok")]
    Ok(T),
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    value
        .serialize(&mut rmp_serde::Serializer::new(&mut body).with_struct_map())
        .expect("plain data encodes");
    body
}

pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    match rmp_serde::from_slice::<Reply<T>>(body)? {
        Reply::Ok(value) => Ok(value),
    }
}

type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<Vec<u8>>>>>;

/// The hand-written client.
pub(crate) struct RawClient {
    _connection: Connection,
    channel: Channel,
    reply_to: ShortString,
    waiting: Waiting,
    prefix: String,
    next: AtomicU64,
    queue: ShortString,
    /// Whether each request carries a `traceparent` (`headers.rs`).
    traced: bool,
}

impl RawClient {
    pub(crate) async fn connect(url: &str, queue: &str, traced: bool) -> Result<Self, Error> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        if crate::service::raw_confirms() {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
        }
        let reply_queue = channel
            .queue_declare(
                ShortString::default(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let reply_to = reply_queue.name().clone();
        let mut consumer = channel
            .basic_consume(
                reply_to.clone(),
                ShortString::default(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let waiting: Waiting = Arc::default();
        let replies = waiting.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let sender = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|id| replies.lock().expect("lock").remove(id.as_str()));
                if let Some(sender) = sender {
                    let _ = sender.send(delivery.data);
                }
            }
        });
        Ok(Self {
            _connection: connection,
            channel,
            reply_to,
            waiting,
            prefix: format!("{}.", uuid::Uuid::new_v4().simple()),
            next: AtomicU64::new(0),
            queue: queue.into(),
            traced,
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
        let mut properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_type(method.into())
            .with_correlation_id(id.into())
            .with_reply_to(self.reply_to.clone());
        if crate::service::expiration() {
            properties = properties.with_expiration("30000".into());
        }
        let deadline = headers::deadline();
        if deadline || self.traced {
            let mut table = FieldTable::default();
            if self.traced {
                let traceparent = LongString::from(headers::traceparent());
                table.insert(
                    headers::TRACEPARENT.into(),
                    AMQPValue::LongString(traceparent),
                );
            }
            if deadline {
                let millis = AMQPValue::LongLongInt(headers::deadline_millis());
                table.insert(headers::DEADLINE.into(), millis);
            }
            properties = properties.with_headers(table);
        }
        let confirmation = self
            .channel
            .basic_publish(
                ShortString::default(),
                self.queue.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &body,
                properties,
            )
            .await?
            // Without confirm mode, resolves at once (nothing to confirm).
            .await?;
        if confirmation.take_message().is_some() {
            return Err("no such queue".into());
        }
        Ok(reply.await?)
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
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            ShortString::default(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut deliveries = consumer;
    // The consume loop in a task of its own (measured faster than on the
    // main task), one task per request so that up to `prefetch` run at once.
    tokio::spawn(async move {
        let _connection = connection;
        while let Some(Ok(delivery)) = deliveries.next().await {
            tokio::spawn(handle(channel.clone(), delivery));
        }
    });
    Ok(())
}

async fn handle(channel: Channel, delivery: Delivery) {
    if let Some(table) = delivery.properties.headers() {
        let table = table.inner();
        if let Some(AMQPValue::LongString(traceparent)) = table.get(headers::TRACEPARENT) {
            std::hint::black_box(headers::continue_trace(traceparent.as_bytes()));
        }
        if let Some(AMQPValue::LongLongInt(deadline)) = table.get(headers::DEADLINE) {
            std::hint::black_box(deadline);
        }
    }
    let reply = match delivery
        .properties
        .kind()
        .as_ref()
        .map(|kind| kind.as_str())
    {
        Some("fib") => rmp_serde::from_slice::<(u32,)>(&delivery.data)
            .ok()
            .and_then(|(n,)| fib(n).ok())
            .map(|value| encode(&Reply::Ok(value))),
        Some("echo") => rmp_serde::from_slice::<(Payload,)>(&delivery.data)
            .ok()
            .map(|(payload,)| encode(&Reply::Ok(payload))),
        _ => None,
    };
    if let (Some(reply), Some(reply_to)) = (reply, delivery.properties.reply_to()) {
        let mut properties = BasicProperties::default().with_content_type(CONTENT_TYPE.into());
        if let Some(id) = delivery.properties.correlation_id() {
            properties = properties.with_correlation_id(id.clone());
        }
        let _ = channel
            .basic_publish(
                ShortString::default(),
                reply_to.clone(),
                BasicPublishOptions::default(),
                &reply,
                properties,
            )
            .await;
    }
    let _ = delivery.ack(BasicAckOptions::default()).await;
}
