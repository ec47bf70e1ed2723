//! A client session's channels: its reply consumer's, the channel its
//! requests are published on (the same one for direct reply-to, which
//! requires it), and the stream of replies.

use super::{
    AmqpError,
    link::Link,
    properties::IncomingProperties,
    publish::{CallPublisher, ReturnedTo, open_channel},
};
use crate::protocol::reply_address::DIRECT_REPLY_TO;
use futures_util::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, QueueDeclareOptions},
    types::{FieldTable, ShortString},
};
use std::sync::Arc;

/// Where a session's replies come.
#[derive(Debug, Clone)]
pub(crate) enum ReplyAddress {
    /// An exclusive, auto-deleted queue of this name, declared for the
    /// session.
    ExclusiveQueue(String),
    /// RabbitMQ's direct reply-to.
    DirectReplyTo,
}

/// The replies of a session, as they come.
pub(crate) struct Replies(lapin::Consumer);

impl Replies {
    /// Hands each reply, its correlation id and its body, to `to_caller`
    /// until the consumer ends; returns why it ended. Each delivery is read
    /// where it arrives: moving one (its properties are some hundreds of
    /// bytes) costs more than handing out its two parts.
    pub(crate) async fn hand_out(
        &mut self,
        mut to_caller: impl FnMut(Option<&str>, Vec<u8>),
    ) -> String {
        loop {
            match self.0.next().await {
                Some(Ok(delivery)) => to_caller(
                    IncomingProperties::correlation_id_of(&delivery.properties),
                    delivery.data,
                ),
                Some(Err(error)) => return error.to_string(),
                None => return "the broker cancelled the reply consumer".to_owned(),
            }
        }
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
pub(crate) struct ReplyChannel(lapin::Channel);

impl ReplyChannel {
    /// Closes the channel (and so the consumer, and its exclusive queue).
    pub(crate) async fn close(&self) {
        let _ = self.0.close(200, "session over".into()).await;
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
    let reply_to: ShortString = match address {
        ReplyAddress::DirectReplyTo => DIRECT_REPLY_TO.into(),
        ReplyAddress::ExclusiveQueue(name) => {
            let exclusive = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(name.as_str().into(), exclusive, FieldTable::default())
                .await?;
            name.as_str().into()
        }
    };
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    // For direct reply-to, consuming before the first publish is required.
    let consumer = channel
        .basic_consume(
            reply_to.clone(),
            ShortString::default(),
            no_ack,
            FieldTable::default(),
        )
        .await?;
    let (requests, reply_channel) = match address {
        ReplyAddress::DirectReplyTo => (CallPublisher::new(channel, confirms, returned), None),
        ReplyAddress::ExclusiveQueue(_) => (
            CallPublisher::open(link, confirms, returned).await?,
            Some(ReplyChannel(channel)),
        ),
    };
    Ok(SessionChannels {
        requests,
        replies: Replies(consumer),
        reply_to: Arc::from(reply_to.as_str()),
        reply_channel,
    })
}
