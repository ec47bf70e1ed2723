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
