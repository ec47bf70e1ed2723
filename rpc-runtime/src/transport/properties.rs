//! AMQP properties, to and from the protocol's own
//! ([`RequestProperties`], [`ReceivedProperties`], [`ReplyProperties`]).

use crate::protocol::{
    reply::ReplyProperties,
    request::{ReceivedProperties, RequestProperties},
};
use lapin::{BasicProperties, types::ShortString};

/// A request's properties as lapin publishes them. Owned strings are moved,
/// not copied: the properties are some hundreds of bytes, built once per
/// call.
pub(super) fn request(properties: RequestProperties) -> BasicProperties {
    let RequestProperties {
        method,
        correlation_id,
        reply_to,
        content_type,
        expiration,
    } = properties;
    let mut amqp = BasicProperties::default()
        .with_content_type(content_type.into())
        .with_type(method.into());
    if let Some(correlation_id) = correlation_id {
        amqp = amqp.with_correlation_id(correlation_id.into());
    }
    if let Some(reply_to) = reply_to {
        amqp = amqp.with_reply_to(ShortString::from(&*reply_to));
    }
    if let Some(expiration) = expiration {
        amqp = amqp.with_expiration(expiration.into());
    }
    amqp
}

/// A reply's properties as lapin publishes them.
pub(super) fn reply(properties: ReplyProperties<'_>) -> BasicProperties {
    let amqp = BasicProperties::default().with_content_type(properties.content_type.into());
    match properties.correlation_id {
        Some(correlation_id) => amqp.with_correlation_id(correlation_id.into()),
        None => amqp,
    }
}

/// The properties of a delivered request, kept as lapin delivered them and
/// read through [`IncomingProperties::view`]: a handler's context shares
/// them rather than copying their strings.
#[derive(Debug, Clone, Default)]
pub(crate) struct IncomingProperties(BasicProperties);

impl IncomingProperties {
    pub(super) fn new(properties: BasicProperties) -> Self {
        Self(properties)
    }

    /// The properties as the protocol reads them.
    pub(crate) fn view(&self) -> ReceivedProperties<'_> {
        fn text(value: &Option<ShortString>) -> Option<&str> {
            value.as_ref().map(ShortString::as_str)
        }
        ReceivedProperties {
            method: text(self.0.kind()),
            correlation_id: text(self.0.correlation_id()),
            reply_to: text(self.0.reply_to()),
            content_type: text(self.0.content_type()),
            content_encoding: text(self.0.content_encoding()),
        }
    }

    /// The correlation id of a returned message.
    pub(super) fn correlation_id_of(properties: &BasicProperties) -> Option<&str> {
        properties
            .correlation_id()
            .as_ref()
            .map(ShortString::as_str)
    }
}
