//! A client session's channels: a channel for calls with its reply
//! consumer, and the stream of replies.

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

/// One reply: its correlation id and body.
pub(crate) struct Reply {
    pub(crate) properties: IncomingProperties,
    pub(crate) body: Vec<u8>,
}

impl Replies {
    /// The next reply, or why no more will come.
    pub(crate) async fn next(&mut self) -> Result<Reply, String> {
        match self.0.next().await {
            Some(Ok(delivery)) => Ok(Reply {
                properties: IncomingProperties::new(delivery.properties),
                body: delivery.data,
            }),
            Some(Err(error)) => Err(error.to_string()),
            None => Err("the broker cancelled the reply consumer".to_owned()),
        }
    }
}

/// Opens a session's channel for calls (with publisher confirms if
/// `confirms`) and its reply consumer at `address`; returns the publisher,
/// the replies, and the `reply_to` its requests carry.
pub(crate) async fn open_session(
    link: &Link,
    address: &ReplyAddress,
    confirms: bool,
    returned: ReturnedTo,
) -> Result<(CallPublisher, Replies, Arc<str>), AmqpError> {
    let channel = open_channel(link, confirms).await?;
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
    let publisher = CallPublisher::new(channel, confirms, returned);
    Ok((publisher, Replies(consumer), Arc::from(reply_to.as_str())))
}
