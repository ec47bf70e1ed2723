//! A server session's channel: its request queue declared, `basic.qos`, the
//! stream of requests, and the channel's writes (replies, acknowledgements,
//! rejections and requeues).
//!
//! amqprs has no per-delivery acker: a delivery's tag is settled on its
//! channel, which each [`RequestTag`] shares. Every write checks first that
//! the channel is open (see [`amqprs`](super) for why).

use super::{
    AmqpChannel, AmqpError,
    link::Link,
    lock,
    properties::{self, IncomingProperties},
};
use crate::protocol::reply::ReplyProperties;
pub(crate) use crate::transport::shared::QueueSettings;
use amqprs::{
    FieldTable, FieldValue, LongStr, ShortStr,
    channel::{
        BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicNackArguments,
        BasicPublishArguments, BasicQosArguments, BasicRejectArguments, ConsumerMessage,
        QueueDeclareArguments,
    },
};
use futures_util::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use std::sync::Arc;
use tokio::sync::mpsc;

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
    /// One reference count per delivery, not amqprs's handle's five.
    channel: Arc<AmqpChannel>,
}

impl RequestTag {
    /// Its number on its channel: numbers grow with each delivery.
    pub(crate) fn number(&self) -> u64 {
        self.tag
    }

    /// Rejects the request without requeue (dead-lettered if the queue has
    /// a dead-letter exchange).
    pub(crate) async fn reject(&self) -> Result<(), AmqpError> {
        if !self.channel.is_open() {
            return Err(self.channel.closed_error());
        }
        self.channel
            .amqp()
            .basic_reject(BasicRejectArguments::new(self.tag, false))
            .await
            .map_err(|error| self.channel.error(error))
    }

    /// Hands the request back to the queue, for another consumer.
    pub(crate) async fn requeue(&self) -> Result<(), AmqpError> {
        if !self.channel.is_open() {
            return Err(self.channel.closed_error());
        }
        self.channel
            .amqp()
            .basic_nack(BasicNackArguments::new(self.tag, false, true))
            .await
            .map_err(|error| self.channel.error(error))
    }
}

/// The requests of a session, as they come.
pub(crate) struct Requests {
    deliveries: mpsc::UnboundedReceiver<ConsumerMessage>,
    channel: Arc<AmqpChannel>,
}

impl Requests {
    /// Whether another delivery has come and waits to be taken.
    pub(crate) fn has_more(&self) -> bool {
        !self.deliveries.is_empty()
    }

    /// The next request, or why no more will come (`Err(None)`: the broker
    /// cancelled the consumer, or it was cancelled here).
    pub(crate) async fn next(&mut self) -> Result<Incoming, Option<String>> {
        loop {
            let Some(delivery) = self.deliveries.recv().await else {
                // amqprs ends the stream alike for a cancelled consumer, a
                // closed channel and a lost connection.
                return Err(self.channel.ended());
            };
            let ConsumerMessage {
                deliver,
                basic_properties,
                content,
                ..
            } = delivery;
            // amqprs fills all three for a delivery to a consumer.
            let Some(deliver) = deliver else { continue };
            return Ok(Incoming {
                properties: Arc::new(IncomingProperties::new(
                    basic_properties.unwrap_or_default(),
                )),
                body: content.unwrap_or_default(),
                redelivered: deliver.redelivered(),
                delivery: RequestTag {
                    tag: deliver.delivery_tag(),
                    channel: self.channel.clone(),
                },
            });
        }
    }
}

/// A server session's channel, for its writes.
pub(crate) struct RequestChannel {
    channel: Arc<AmqpChannel>,
    consumer_tag: String,
    /// The consumer's cancel, once asked: [`close`](Self::close) waits for
    /// it (see [`cancel_consumer`](Self::cancel_consumer)).
    cancel: std::sync::Mutex<Option<Cancel>>,
}

/// A consumer's cancel, running in a task of the link's, awaited by whoever
/// asks.
type Cancel = Shared<BoxFuture<'static, Result<(), AmqpError>>>;

/// A text argument of a queue declaration.
fn text_argument(text: &str) -> Result<FieldValue, AmqpError> {
    LongStr::try_from(text)
        .map(FieldValue::S)
        .map_err(|_| AmqpError::other("a queue argument too long"))
}

/// A queue declaration's arguments as `settings` say.
fn queue_arguments(settings: &QueueSettings) -> Result<FieldTable, AmqpError> {
    let mut arguments = FieldTable::new();
    let mut insert = |name: &'static str, value: FieldValue| -> Result<(), AmqpError> {
        let name =
            ShortStr::try_from(name).map_err(|_| AmqpError::other("a queue argument's name"))?;
        arguments.insert(name, value);
        Ok(())
    };
    if settings.quorum {
        insert("x-queue-type", text_argument("quorum")?)?;
    }
    if let Some(limit) = settings.delivery_limit {
        insert("x-delivery-limit", FieldValue::l(limit.into()))?;
    }
    if let Some(dead_letters) = &settings.dead_letter_queue {
        insert("x-dead-letter-exchange", text_argument("")?)?;
        insert("x-dead-letter-routing-key", text_argument(dead_letters)?)?;
    }
    Ok(arguments)
}

/// Declares `queue` as `settings` say, sets the prefetch, and consumes it
/// with acknowledgements.
pub(crate) async fn open_session(
    link: &Link,
    queue: &str,
    prefetch: u16,
    settings: QueueSettings,
) -> Result<(RequestChannel, Requests), AmqpError> {
    let channel = AmqpChannel::open(link).await?;
    let failed = |error| channel.error(error);
    channel
        .amqp()
        .basic_qos(BasicQosArguments::new(0, prefetch, false))
        .await
        .map_err(failed)?;
    let arguments = queue_arguments(&settings)?;
    properties::short(queue, "queue name").map_err(|error| AmqpError::other(error.to_string()))?;
    if let Some(dead_letters) = &settings.dead_letter_queue {
        properties::short(dead_letters, "dead-letter queue name")
            .map_err(|error| AmqpError::other(error.to_string()))?;
        channel
            .amqp()
            .queue_declare(QueueDeclareArguments::durable_client_named(dead_letters))
            .await
            .map_err(failed)?;
    }
    channel
        .amqp()
        .queue_declare(
            QueueDeclareArguments::durable_client_named(queue)
                .arguments(arguments)
                .finish(),
        )
        .await
        .map_err(failed)?;
    // Acknowledgements: amqprs's default (`manual_ack`).
    let (consumer_tag, deliveries) = channel
        .amqp()
        .basic_consume_rx(BasicConsumeArguments::new(queue, ""))
        .await
        .map_err(failed)?;
    let channel = Arc::new(channel);
    Ok((
        RequestChannel {
            channel: channel.clone(),
            consumer_tag,
            cancel: std::sync::Mutex::new(None),
        },
        Requests {
            deliveries,
            channel,
        },
    ))
}

impl RequestChannel {
    /// Publishes a reply to `reply_to`; returns once amqprs has queued it
    /// for the connection, whose writer keeps the order (so that an
    /// acknowledgement sent next goes after it).
    pub(crate) async fn publish_reply(
        &self,
        reply_to: &str,
        properties: ReplyProperties<'_>,
        body: &[u8],
    ) -> Result<(), AmqpError> {
        let properties =
            properties::reply(properties).map_err(|error| AmqpError::other(error.to_string()))?;
        properties::short(reply_to, "reply address")
            .map_err(|error| AmqpError::other(error.to_string()))?;
        if !self.channel.is_open() {
            return Err(self.channel.closed_error());
        }
        self.channel
            .amqp()
            .basic_publish(
                properties,
                body.to_vec(),
                BasicPublishArguments::new("", reply_to),
            )
            .await
            .map_err(|error| self.channel.error(error))
    }

    /// Lets the handlers that can run now settle their requests before an
    /// acknowledgement is written: amqprs's writes return once queued for
    /// its connection's writer, which writes every frame with a system call
    /// of its own, so without this a batch would rarely hold more than one
    /// request (lapin's writes return once written, and the requests settled
    /// meanwhile make the batch). One task switch: the acknowledgement
    /// follows the reply already queued, which its caller may have.
    pub(crate) async fn gather_acknowledgements(&self) {
        tokio::task::yield_now().await;
    }

    /// Acknowledges request `tag`, and with `multiple` every request before
    /// it too: one frame written on the channel.
    pub(crate) async fn acknowledge(&self, tag: u64, multiple: bool) -> Result<(), AmqpError> {
        if !self.channel.is_open() {
            return Err(self.channel.closed_error());
        }
        self.channel
            .amqp()
            .basic_ack(BasicAckArguments::new(tag, multiple))
            .await
            .map_err(|error| self.channel.error(error))
    }

    /// Cancels the consumer: after the broker's cancel-ok, the stream yields
    /// what it still held, then ends.
    pub(crate) async fn cancel_consumer(&self) -> Result<(), AmqpError> {
        if !self.channel.is_open() {
            return Err(self.channel.closed_error());
        }
        // In a task of the link's: a shutdown without grace stops waiting
        // at once, and amqprs's channel task panics when an operation is
        // dropped half-way (see the module doc). Once asked, the cancel is
        // seen to its end, by this call or by `close`.
        let cancel = lock(&self.cancel)
            .get_or_insert_with(|| {
                let channel = self.channel.clone();
                let tag = self.consumer_tag.clone();
                async move {
                    let amqp = channel.amqp().clone();
                    channel
                        .ask(
                            async move { amqp.basic_cancel(BasicCancelArguments::new(&tag)).await },
                        )
                        .await
                        .map(drop)
                        .map_err(|error| channel.error(error))
                }
                .boxed()
                .shared()
            })
            .clone();
        cancel.await
    }

    /// Whether the channel is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.channel.is_open()
    }

    /// Closes the channel: the requests not acknowledged on it go back to
    /// the queue.
    pub(crate) async fn close(&self, reason: &str) {
        // After the consumer's cancel, if one was asked: its `basic.cancel`
        // written behind the `channel.close` would make the broker close
        // the whole connection (504 CHANNEL_ERROR, seen on a busy machine
        // when a shutdown without grace stopped waiting for the cancel).
        let cancel = lock(&self.cancel).clone();
        if let Some(cancel) = cancel {
            let _ = cancel.await;
        }
        self.channel.close(reason).await;
    }
}
