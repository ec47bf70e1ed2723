//! A client session's channels: its reply consumer's, the channel its
//! requests are published on (the same one for direct reply-to, which
//! requires it), and the stream of replies.

use super::{
    AmqpChannel, AmqpError,
    link::Link,
    properties::IncomingProperties,
    publish::{CallPublisher, ReturnedTo, open_channel},
};
use crate::protocol::reply_address::DIRECT_REPLY_TO;
use amqprs::channel::{BasicConsumeArguments, ConsumerMessage, QueueDeclareArguments};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Where a session's replies come.
#[derive(Debug, Clone)]
pub(crate) enum ReplyAddress {
    /// An exclusive, auto-deleted queue of this name, declared for the
    /// session.
    ExclusiveQueue(String),
    /// RabbitMQ's direct reply-to.
    DirectReplyTo,
}

/// The replies of a session, as they come, and the channel they come on
/// (to tell why they stopped).
pub(crate) struct Replies {
    deliveries: mpsc::UnboundedReceiver<ConsumerMessage>,
    channel: Arc<AmqpChannel>,
}

impl Replies {
    /// Hands each reply, its correlation id and its body, to `to_caller`
    /// until the consumer ends; returns why it ended. Each delivery is read
    /// where it arrives.
    pub(crate) async fn hand_out(
        &mut self,
        mut to_caller: impl FnMut(Option<&str>, Vec<u8>),
    ) -> String {
        while let Some(delivery) = self.deliveries.recv().await {
            let correlation_id = delivery
                .basic_properties
                .as_ref()
                .and_then(IncomingProperties::correlation_id_of);
            to_caller(correlation_id, delivery.content.unwrap_or_default());
        }
        // amqprs ends the stream alike for a cancelled consumer, a closed
        // channel and a lost connection.
        self.channel
            .ended()
            .unwrap_or_else(|| "the broker cancelled the reply consumer".to_owned())
    }
}

/// A session's channels, as [`open_session`] sets them up.
pub(crate) struct SessionChannels {
    /// Where requests are published.
    pub(crate) requests: CallPublisher,
    /// The replies, as they come.
    pub(crate) replies: Replies,
    /// The `reply_to` requests carry.
    pub(crate) reply_to: Arc<str>,
    /// The reply consumer's channel, if requests have another: then
    /// `requests` may be replaced with [`CallPublisher::open`] while the
    /// replies keep coming here.
    pub(crate) reply_channel: Option<ReplyChannel>,
}

/// The channel of a reply consumer that requests are not published on.
pub(crate) struct ReplyChannel(Arc<AmqpChannel>);

impl ReplyChannel {
    /// Closes the channel (and so the consumer, and its exclusive queue).
    pub(crate) async fn close(&self) {
        self.0.close("session over").await;
    }
}

/// Opens a session's reply consumer at `address` and its channel for calls
/// (with publisher confirms if `confirms`): one channel for both with
/// direct reply-to, which requires it, two otherwise.
pub(crate) async fn open_session(
    link: &Link,
    address: &ReplyAddress,
    confirms: bool,
    returned: ReturnedTo,
) -> Result<SessionChannels, AmqpError> {
    let direct = matches!(address, ReplyAddress::DirectReplyTo);
    // Confirms on the reply channel only if requests go out on it.
    let channel = open_channel(link, confirms && direct).await?;
    let reply_to = match address {
        ReplyAddress::DirectReplyTo => DIRECT_REPLY_TO,
        ReplyAddress::ExclusiveQueue(name) => {
            let exclusive = QueueDeclareArguments::new(name)
                .exclusive(true)
                .auto_delete(true)
                .finish();
            channel
                .amqp()
                .queue_declare(exclusive)
                .await
                .map_err(|error| channel.error(error))?;
            name.as_str()
        }
    };
    // For direct reply-to, consuming before the first publish is required.
    let (_, deliveries) = channel
        .amqp()
        .basic_consume_rx(
            BasicConsumeArguments::new(reply_to, "")
                .auto_ack(true)
                .finish(),
        )
        .await
        .map_err(|error| channel.error(error))?;
    let reply_to = Arc::from(reply_to);
    let (requests, channel) = match address {
        ReplyAddress::DirectReplyTo => {
            // The publisher's handle and the replies' share the channel.
            let replies = Arc::new(channel.clone());
            (CallPublisher::new(channel, confirms, returned), replies)
        }
        ReplyAddress::ExclusiveQueue(_) => (
            CallPublisher::open(link, confirms, returned).await?,
            Arc::new(channel),
        ),
    };
    let reply_channel = (!direct).then(|| ReplyChannel(channel.clone()));
    Ok(SessionChannels {
        requests,
        replies: Replies {
            deliveries,
            channel,
        },
        reply_to,
        reply_channel,
    })
}
