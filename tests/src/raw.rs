//! Raw AMQP, as a client in another language would use it: publishing
//! hand-made requests and reading replies byte for byte.

use crate::broker::amqp_url;
use futures_util::StreamExt;
use rpc_runtime::lapin::{
    self, BasicProperties, Channel, Connection, ConnectionProperties, Consumer,
    options::{
        BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::FieldTable,
};
use serde::Deserialize;
use std::{collections::HashMap, time::Duration};

/// A raw connection and channel, the channel in confirm mode: a publication
/// returns once the broker has taken it, so a call made after it, on
/// another connection, reaches the queue after it.
#[derive(Debug)]
pub struct Raw {
    pub connection: Connection,
    pub channel: Channel,
}

impl Raw {
    pub async fn open() -> lapin::Result<Self> {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            connection,
            channel,
        })
    }

    /// Publishes `body` to the default exchange with routing key `queue`,
    /// and waits for the broker's confirmation.
    pub async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> lapin::Result<()> {
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?
            .await?;
        Ok(())
    }

    /// Declares an exclusive queue to receive replies on, named like the
    /// reply queues servers reply to by default (`rpc-reply.`), and consumes
    /// it.
    pub async fn reply_queue(&self) -> lapin::Result<(String, Consumer)> {
        reply_queue_on(&self.channel).await
    }

    /// Declares an exclusive reply queue that nobody consumes, so that the
    /// replies it receives can be counted.
    pub async fn counting_reply_queue(&self) -> lapin::Result<String> {
        declare_reply_queue(&self.channel).await
    }

    /// How many messages wait in `queue` (ready, not unacknowledged).
    pub async fn message_count(&self, queue: &str) -> lapin::Result<u32> {
        Ok(self.inspect(queue).await?.message_count())
    }

    /// How many consumers `queue` has.
    pub async fn consumer_count(&self, queue: &str) -> lapin::Result<u32> {
        Ok(self.inspect(queue).await?.consumer_count())
    }

    /// Waits until `queue` has `count` consumers.
    pub async fn wait_consumers(&self, queue: &str, count: u32) {
        crate::guards::within(crate::guards::PATIENCE, "the queue's consumers", async {
            while self.consumer_count(queue).await.expect("passive declare") != count {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    async fn inspect(&self, queue: &str) -> lapin::Result<lapin::Queue> {
        self.channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
    }
}

/// The next delivery on `consumer`: its properties and body.
pub async fn next_reply(consumer: &mut Consumer) -> (BasicProperties, Vec<u8>) {
    let delivery = crate::guards::within(crate::guards::PATIENCE, "a reply", consumer.next())
        .await
        .expect("consumer open")
        .expect("delivery");
    (delivery.properties, delivery.data)
}

/// A reply body decoded generically: its single key and the raw value.
#[derive(Debug, Deserialize)]
pub struct FaultBody {
    pub kind: String,
    pub message: String,
}

/// Decodes a `{"fault": {"kind": .., "message": ..}}` reply.
pub fn decode_fault(body: &[u8]) -> FaultBody {
    let mut map: HashMap<String, FaultBody> =
        rmp_serde::from_slice(body).expect("a fault reply is a map of one fault");
    assert_eq!(map.len(), 1, "a reply has exactly one key");
    map.remove("fault").expect("the key is `fault`")
}

/// Deletes `queue` if it exists.
pub async fn delete_queue(queue: &str) -> lapin::Result<()> {
    let raw = Raw::open().await?;
    raw.channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    let _ = raw.connection.close(200, "done".into()).await;
    Ok(())
}

/// [`Raw::reply_queue`] on any channel (of a connection to another broker,
/// say).
pub async fn reply_queue_on(channel: &Channel) -> lapin::Result<(String, Consumer)> {
    let name = declare_reply_queue(channel).await?;
    let consumer = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok((name, consumer))
}

async fn declare_reply_queue(channel: &Channel) -> lapin::Result<String> {
    let name = format!("rpc-reply.raw.{}", uuid::Uuid::new_v4().simple());
    channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(name)
}
