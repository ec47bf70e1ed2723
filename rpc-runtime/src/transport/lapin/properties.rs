//! AMQP properties, to and from the protocol's own
//! ([`RequestProperties`], [`ReceivedProperties`], [`ReplyProperties`]).

use crate::protocol::{
    headers::{self, HeaderValue, RequestHeaders},
    reply::ReplyProperties,
    request::{ReceivedProperties, RequestProperties},
};
use lapin::{
    BasicProperties,
    types::{AMQPValue, FieldTable, LongString, ShortString},
};

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
        user_id,
        headers,
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
    if let Some(user_id) = user_id {
        amqp = amqp.with_user_id(ShortString::from(&*user_id));
    }
    if let Some(table) = header_table(headers) {
        amqp = amqp.with_headers(table);
    }
    amqp
}

/// The `headers` table of a request, if it has any.
fn header_table(headers: RequestHeaders) -> Option<FieldTable> {
    let RequestHeaders {
        traceparent,
        tracestate,
        deadline,
        metadata,
    } = headers;
    if traceparent.is_none() && deadline.is_none() && metadata.is_empty() {
        return None;
    }
    let mut table = FieldTable::default();
    let text = |value: String| AMQPValue::LongString(LongString::from(value));
    if let Some(traceparent) = traceparent {
        table.insert(headers::TRACEPARENT.into(), text(traceparent.format()));
    }
    if let Some(tracestate) = tracestate {
        table.insert(headers::TRACESTATE.into(), text(tracestate));
    }
    if let Some(deadline) = deadline {
        table.insert(headers::DEADLINE.into(), AMQPValue::LongLongInt(deadline));
    }
    for (name, value) in metadata.iter() {
        table.insert(name.into(), text(value.to_owned()));
    }
    Some(table)
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
            user_id: text(self.0.user_id()),
        }
    }

    /// The value of header `name`, if the request has it.
    pub(crate) fn header(&self, name: &str) -> Option<HeaderValue<'_>> {
        let table = self.0.headers().as_ref()?;
        table.inner().get(name).map(header_value)
    }

    /// The bytes of string header `name`, if the request has it, not checked
    /// to be UTF-8: for headers read as bytes (a `traceparent`), which need
    /// not pay for the check.
    pub(crate) fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        match self.0.headers().as_ref()?.inner().get(name)? {
            AMQPValue::LongString(text) => Some(text.as_bytes()),
            AMQPValue::ShortString(text) => Some(text.as_str().as_bytes()),
            _ => None,
        }
    }

    /// Every header, in name order.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, HeaderValue<'_>)> {
        self.0
            .headers()
            .iter()
            .flat_map(|table| table.inner().iter())
            .map(|(name, value)| (name.as_str(), header_value(value)))
    }

    /// The correlation id of a returned message.
    pub(super) fn correlation_id_of(properties: &BasicProperties) -> Option<&str> {
        properties
            .correlation_id()
            .as_ref()
            .map(ShortString::as_str)
    }
}

fn header_value(value: &AMQPValue) -> HeaderValue<'_> {
    let integer = |value: i64| HeaderValue::Integer(value);
    match value {
        AMQPValue::LongString(text) => {
            std::str::from_utf8(text.as_bytes()).map_or(HeaderValue::Other, HeaderValue::Text)
        }
        AMQPValue::ShortString(text) => HeaderValue::Text(text.as_str()),
        AMQPValue::ShortShortInt(value) => integer((*value).into()),
        AMQPValue::ShortShortUInt(value) => integer((*value).into()),
        AMQPValue::ShortInt(value) => integer((*value).into()),
        AMQPValue::ShortUInt(value) => integer((*value).into()),
        AMQPValue::LongInt(value) => integer((*value).into()),
        AMQPValue::LongUInt(value) => integer((*value).into()),
        AMQPValue::LongLongInt(value) => integer(*value),
        _ => HeaderValue::Other,
    }
}
