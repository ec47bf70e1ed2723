//! AMQP properties, to and from the protocol's own
//! ([`RequestProperties`], [`ReceivedProperties`], [`ReplyProperties`]).
//!
//! amqprs's property setters and table keys take their text as short
//! strings and panic on one longer than 255 bytes: every text is checked
//! here first, and properties that cannot be written are an error (lapin
//! fails the publication likewise). amqprs's field table is a hash map:
//! headers are sorted by name when listed. amqprs reads every short and
//! long string as UTF-8 text: a delivery whose property or header is not
//! fails to parse, in amqprs, which ends the connection (before anything
//! reaches this module), as lapin's parser does.

use crate::protocol::{
    headers::{self, HeaderValue, RequestHeaders},
    reply::ReplyProperties,
    request::{ReceivedProperties, RequestProperties},
};
use amqprs::{BasicProperties, FieldTable, FieldValue, LongStr, ShortStr};

/// A text too long for an AMQP short string (255 bytes).
#[derive(Debug)]
pub(super) struct TooLong(pub(super) &'static str);

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request's {} is longer than 255 bytes", self.0)
    }
}

/// `text`, if it fits in a short string.
pub(super) fn short<'a>(text: &'a str, what: &'static str) -> Result<&'a str, TooLong> {
    if text.len() <= usize::from(u8::MAX) {
        Ok(text)
    } else {
        Err(TooLong(what))
    }
}

/// `text`, owned, if it fits in a short string.
fn short_owned(text: String, what: &'static str) -> Result<String, TooLong> {
    short(&text, what)?;
    Ok(text)
}

/// A request's properties as amqprs publishes them.
///
/// Built with `BasicProperties::new`, which takes its texts owned: the
/// correlation id and the expiration, made for this request, move in,
/// where the `with_` setters would copy them (an allocation, a copy and a
/// free each, per call).
pub(super) fn request(properties: RequestProperties) -> Result<BasicProperties, TooLong> {
    let RequestProperties {
        method,
        correlation_id,
        reply_to,
        content_type,
        expiration,
        user_id,
        headers,
    } = properties;
    let content_type = short(content_type, "content type")?.to_owned();
    let method = short(method, "method")?.to_owned();
    let optional =
        |text: Option<String>, what| text.map(|text| short_owned(text, what)).transpose();
    let correlation_id = optional(correlation_id, "correlation id")?;
    let reply_to = optional(reply_to.as_deref().map(str::to_owned), "reply address")?;
    let expiration = optional(expiration, "expiration")?;
    let user_id = optional(user_id.as_deref().map(str::to_owned), "user id")?;
    let headers = header_table(headers)?;
    Ok(BasicProperties::new(
        Some(content_type),
        None,
        headers,
        None,
        None,
        correlation_id,
        reply_to,
        expiration,
        None,
        None,
        Some(method),
        user_id,
        None,
        None,
    ))
}

/// The `headers` table of a request, if it has any.
fn header_table(headers: RequestHeaders) -> Result<Option<FieldTable>, TooLong> {
    let RequestHeaders {
        traceparent,
        tracestate,
        deadline,
        metadata,
    } = headers;
    if traceparent.is_none() && deadline.is_none() && metadata.is_empty() {
        return Ok(None);
    }
    let mut table = FieldTable::new();
    let mut insert = |name: &str, value: FieldValue| -> Result<(), TooLong> {
        let name = ShortStr::try_from(name).map_err(|_| TooLong("header name"))?;
        table.insert(name, value);
        Ok(())
    };
    let text = |value: String| -> Result<FieldValue, TooLong> {
        // A long string's length is a u32: 4 GiB, past any frame.
        LongStr::try_from(value)
            .map(FieldValue::S)
            .map_err(|_| TooLong("header value"))
    };
    if let Some(traceparent) = traceparent {
        insert(headers::TRACEPARENT, text(traceparent.format())?)?;
    }
    if let Some(tracestate) = tracestate {
        insert(headers::TRACESTATE, text(tracestate)?)?;
    }
    if let Some(deadline) = deadline {
        insert(headers::DEADLINE, FieldValue::l(deadline))?;
    }
    for (name, value) in metadata.iter() {
        insert(name, text(value.to_owned())?)?;
    }
    Ok(Some(table))
}

/// A reply's properties as amqprs publishes them.
pub(super) fn reply(properties: ReplyProperties<'_>) -> Result<BasicProperties, TooLong> {
    let mut amqp = BasicProperties::default();
    amqp.with_content_type(short(properties.content_type, "content type")?);
    if let Some(correlation_id) = properties.correlation_id {
        amqp.with_correlation_id(short(correlation_id, "correlation id")?);
    }
    Ok(amqp)
}

/// The properties of a delivered request, kept as amqprs delivered them and
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
        fn text(value: Option<&String>) -> Option<&str> {
            value.map(String::as_str)
        }
        ReceivedProperties {
            method: text(self.0.message_type()),
            correlation_id: text(self.0.correlation_id()),
            reply_to: text(self.0.reply_to()),
            content_type: text(self.0.content_type()),
            content_encoding: text(self.0.content_encoding()),
            user_id: text(self.0.user_id()),
        }
    }

    /// The value of header `name`, if the request has it.
    pub(crate) fn header(&self, name: &str) -> Option<HeaderValue<'_>> {
        let table = self.0.headers()?;
        table
            .as_ref()
            .iter()
            .find(|(key, _)| key.as_ref() == name)
            .map(|(_, value)| header_value(value))
    }

    /// The bytes of string header `name`, if the request has it (amqprs
    /// has checked them to be UTF-8 already, as it reads every string).
    pub(crate) fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        match self.header(name)? {
            HeaderValue::Text(text) => Some(text.as_bytes()),
            _ => None,
        }
    }

    /// Every header, in name order.
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&str, HeaderValue<'_>)> {
        let mut headers: Vec<(&str, HeaderValue<'_>)> = self
            .0
            .headers()
            .into_iter()
            .flat_map(|table| table.as_ref().iter())
            .map(|(name, value)| (name.as_ref().as_str(), header_value(value)))
            .collect();
        headers.sort_unstable_by_key(|(name, _)| *name);
        headers.into_iter()
    }

    /// The correlation id of a delivered message.
    pub(super) fn correlation_id_of(properties: &BasicProperties) -> Option<&str> {
        properties.correlation_id().map(String::as_str)
    }
}

fn header_value(value: &FieldValue) -> HeaderValue<'_> {
    let integer = |value: i64| HeaderValue::Integer(value);
    match value {
        FieldValue::S(text) => HeaderValue::Text(text.as_ref().as_str()),
        FieldValue::b(value) => integer((*value).into()),
        FieldValue::B(value) => integer((*value).into()),
        FieldValue::s(value) => integer((*value).into()),
        FieldValue::u(value) => integer((*value).into()),
        FieldValue::I(value) => integer((*value).into()),
        FieldValue::i(value) => integer((*value).into()),
        FieldValue::l(value) => integer(*value),
        _ => HeaderValue::Other,
    }
}
