//! A server session's channel: its request queue declared, `basic.qos`, the
//! stream of requests, and the channel's writes (replies, acknowledgements,
//! rejections and requeues).

use super::{
    AmqpError,
    link::Link,
    properties::{self, IncomingProperties},
};
use crate::protocol::reply::ReplyProperties;
pub(crate) use crate::transport::shared::QueueSettings;
use futures_util::StreamExt;
use lapin::{
    Acker, Channel, Consumer,
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
        BasicPublishOptions, BasicQosOptions, BasicRejectOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, ShortString},
};
use std::sync::Arc;

/// A delivered request, taken apart once.
pub(crate) struct Incoming {
    /// Shared with the handler's context rather than copied.
    pub(crate) properties: Arc<IncomingProperties>,
    pub(crate) body: Vec<u8>,
    pub(crate) redelivered: bool,
    pub(crate) delivery: RequestTag,
}

/// The broker's handle on one delivered request, to settle it with.
pub(crate) struct RequestTag {
    tag: u64,
    acker: Acker,
}

impl RequestTag {
    /// Its number on its channel: numbers grow with each delivery.
    pub(crate) fn number(&self) -> u64 {
        self.tag
    }

    /// Rejects the request without requeue (dead-lettered if the queue has
    /// a dead-letter exchange).
    pub(crate) async fn reject(&self) -> Result<(), AmqpError> {
        self.acker
            .reject(BasicRejectOptions { requeue: false })
            .await?;
        Ok(())
    }

    /// Hands the request back to the queue, for another consumer.
    pub(crate) async fn requeue(&self) -> Result<(), AmqpError> {
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        self.acker.nack(options).await?;
        Ok(())
    }
}

/// The requests of a session, as they come.
pub(crate) struct Requests(Consumer);

impl Requests {
    /// Whether another delivery may wait to be taken: always said, so that
    /// every request gets a task of its own (see `server::consume`). lapin's
    /// consumer could only tell by being polled, and a handler on lapin
    /// rarely finishes at its first poll anyway: the reply's publication
    /// waits for lapin's I/O thread (peeking, and polling a lone handler
    /// first, cost 1,950 more server instructions a request at 1 in flight).
    pub(crate) fn has_more(&self) -> bool {
        true
    }

    /// The next request, or why no more will come (`Err(None)`: the broker
    /// cancelled the consumer).
    pub(crate) async fn next(&mut self) -> Result<Incoming, Option<String>> {
        match self.0.next().await {
            Some(Ok(delivery)) => Ok(incoming(delivery)),
            Some(Err(error)) => Err(Some(error.to_string())),
            None => Err(None),
        }
    }
}

fn incoming(delivery: Delivery) -> Incoming {
    let Delivery {
        delivery_tag,
        properties,
        data,
        acker,
        redelivered,
        ..
    } = delivery;
    Incoming {
        properties: Arc::new(IncomingProperties::new(properties)),
        body: data,
        redelivered,
        delivery: RequestTag {
            tag: delivery_tag,
            acker,
        },
    }
}

/// A server session's channel, for its writes.
pub(crate) struct RequestChannel {
    channel: Channel,
    consumer_tag: ShortString,
}

/// Declares `queue` as `settings` say, sets the prefetch, and consumes it
/// with acknowledgements.
pub(crate) async fn open_session(
    link: &Link,
    queue: &str,
    prefetch: u16,
    settings: QueueSettings,
) -> Result<(RequestChannel, Requests), AmqpError> {
    let channel = link.amqp.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut arguments = FieldTable::default();
    if settings.quorum {
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    if let Some(limit) = settings.delivery_limit {
        arguments.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(limit.into()),
        );
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    if let Some(dead_letters) = &settings.dead_letter_queue {
        channel
            .queue_declare(dead_letters.as_str().into(), durable, FieldTable::default())
            .await?;
        arguments.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        arguments.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead_letters.as_str().into()),
        );
    }
    channel
        .queue_declare(queue.into(), durable, arguments)
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            ShortString::default(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let consumer_tag = consumer.tag();
    Ok((
        RequestChannel {
            channel,
            consumer_tag,
        },
        Requests(consumer),
    ))
}

impl RequestChannel {
    /// Publishes a reply to `reply_to`; returns once it is written to the
    /// connection (so that an acknowledgement sent next goes after it).
    pub(crate) async fn publish_reply(
        &self,
        reply_to: &str,
        properties: ReplyProperties<'_>,
        body: &[u8],
    ) -> Result<(), AmqpError> {
        self.channel
            .basic_publish(
                ShortString::default(),
                reply_to.into(),
                BasicPublishOptions::default(),
                body,
                properties::reply(properties),
            )
            .await?;
        Ok(())
    }

    /// Nothing to wait for: lapin's writes return once written, and the
    /// requests settled meanwhile make an acknowledgement's batch.
    pub(crate) async fn gather_acknowledgements(&self) {}

    /// Acknowledges request `tag`, and with `multiple` every request before
    /// it too, written on the channel directly: a delivery's `Acker` sends
    /// each acknowledgement through lapin's internal RPC task, which spawns
    /// a task per acknowledgement (about 10,000 instructions per request).
    pub(crate) async fn acknowledge(&self, tag: u64, multiple: bool) -> Result<(), AmqpError> {
        Ok(self
            .channel
            .basic_ack(tag, BasicAckOptions { multiple })
            .await?)
    }

    /// Cancels the consumer: after the broker's cancel-ok, the stream yields
    /// what it still held, then ends.
    pub(crate) async fn cancel_consumer(&self) -> Result<(), AmqpError> {
        Ok(self
            .channel
            .basic_cancel(self.consumer_tag.clone(), BasicCancelOptions::default())
            .await?)
    }

    /// Whether the channel is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Closes the channel: the requests not acknowledged on it go back to
    /// the queue.
    pub(crate) async fn close(&self, reason: &str) {
        let _ = self.channel.close(200, reason.into()).await;
    }
}
