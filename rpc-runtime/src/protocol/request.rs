//! A request's AMQP properties and flags (PROTOCOL.md §2): what a client
//! sets, and how a server reads them.

use super::{CONTENT_TYPE, digits, headers::RequestHeaders};
use crate::metadata::InvalidHeader;
use std::{sync::Arc, time::Duration};
use tokio::time::Instant;

/// `content_type`s a server accepts as MessagePack (a request without one
/// is taken as MessagePack too).
pub(crate) const MSGPACK_CONTENT_TYPES: &[&str] = &[CONTENT_TYPE, "application/x-msgpack"];

/// The longest `expiration` a request carries: ten years
/// (315,360,000,000 ms), the most RabbitMQ accepts. The broker refuses a
/// larger one (`PRECONDITION_FAILED - invalid expiration: value_too_large`)
/// by closing the channel, which would fail every other call in flight on
/// it; a call with a longer timeout waits for its reply as long as it says,
/// and its request expires after ten years in the queue.
pub(crate) const MAX_EXPIRATION: Duration = Duration::from_millis(315_360_000_000);

/// Whether a request is published `mandatory`: with publisher confirms only.
/// The broker then returns a request that no queue takes (there is no such
/// service), and the confirmation that follows carries the return; without
/// confirms, lapin would keep returned messages until `wait_for_confirms`.
pub(crate) fn mandatory(publisher_confirms: bool) -> bool {
    publisher_confirms
}

/// The properties of a request, as a client sets them.
#[derive(Debug)]
pub(crate) struct RequestProperties {
    /// `type`: the method name.
    pub(crate) method: &'static str,
    pub(crate) correlation_id: Option<String>,
    /// Absent for one-way requests.
    pub(crate) reply_to: Option<Arc<str>>,
    pub(crate) content_type: &'static str,
    /// The time left to the caller, in milliseconds (see [`expiration`]).
    pub(crate) expiration: Option<String>,
    /// The caller's identity: the user of its connection, which the broker
    /// checks (PROTOCOL.md §2).
    pub(crate) user_id: Option<Arc<str>>,
    pub(crate) headers: RequestHeaders,
}

impl RequestProperties {
    /// The properties of a call waiting `remaining` more for its reply at
    /// `reply_to`.
    pub(crate) fn call(
        method: &'static str,
        correlation_id: String,
        reply_to: Arc<str>,
        remaining: Duration,
    ) -> Self {
        Self {
            method,
            correlation_id: Some(correlation_id),
            reply_to: Some(reply_to),
            content_type: CONTENT_TYPE,
            expiration: Some(expiration(remaining)),
            user_id: None,
            headers: RequestHeaders::default(),
        }
    }

    /// The properties of a one-way request: no reply address, and an
    /// expiration only if the caller set a timeout (nobody waits for it to
    /// expire with).
    pub(crate) fn one_way(method: &'static str, remaining: Option<Duration>) -> Self {
        Self {
            method,
            correlation_id: None,
            reply_to: None,
            content_type: CONTENT_TYPE,
            expiration: remaining.map(expiration),
            user_id: None,
            headers: RequestHeaders::default(),
        }
    }

    /// Sets the expiration again, to the time left until `expires` (`None`:
    /// the caller set no timeout, and there is nothing to change): for a
    /// request that waited before it was written.
    pub(crate) fn expire_at(&mut self, expires: Option<Instant>) {
        if let Some(expires) = expires {
            self.expiration = Some(expiration(
                expires.saturating_duration_since(Instant::now()),
            ));
        }
    }

    /// Whether the request's content header fits in a frame of `frame_max`
    /// bytes (0: no limit); if not, its size and the limit. AMQP 0-9-1
    /// (§4.2.6) sends a message's properties in one frame: a frame header
    /// of 7 bytes and its end byte, then the class, weight, body size and
    /// property flags (14 bytes), then the properties. A broker answers a
    /// larger one by closing the connection. Only the headers can make it
    /// so; a request without metadata or `tracestate` is not measured.
    pub(crate) fn fits(&self, frame_max: u32) -> Result<(), InvalidHeader> {
        if frame_max == 0 || !self.headers.unbounded() {
            return Ok(());
        }
        let short = |value: Option<&str>| value.map_or(0, |value| 1 + value.len());
        let size = 14
            + short(Some(self.content_type))
            + short(self.correlation_id.as_deref())
            + short(self.reply_to.as_deref())
            + short(self.expiration.as_deref())
            + short(Some(self.method))
            + short(self.user_id.as_deref())
            + self.headers.encoded_len();
        let limit = (frame_max as usize).saturating_sub(8);
        if size > limit {
            return Err(InvalidHeader::TooLarge { size, limit });
        }
        Ok(())
    }
}

/// `remaining` as an `expiration`: decimal milliseconds, at least 1 (an
/// expiration of 0 makes the broker drop the request unless a consumer is
/// ready for it that very moment), at most [`MAX_EXPIRATION`].
pub(crate) fn expiration(remaining: Duration) -> String {
    let millis = remaining.min(MAX_EXPIRATION).as_millis().max(1);
    digits::decimal(millis.try_into().unwrap_or(u64::MAX))
}

/// The properties of a request as a server reads them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReceivedProperties<'a> {
    pub(crate) method: Option<&'a str>,
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) reply_to: Option<&'a str>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) content_encoding: Option<&'a str>,
    /// The caller's identity, as the broker checked it.
    pub(crate) user_id: Option<&'a str>,
}

/// The correlation ids of one client: `<client id>.<sequence>.<tag>`, the
/// sequence number and the tag in lower-case hexadecimal.
///
/// Servers treat correlation ids as opaque; this format is the client's own
/// business. The tag (chosen by the reply table, see
/// [`pending`](crate::client)) lets a client tell its real ids from forged
/// ones.
#[derive(Debug)]
pub(crate) struct CorrelationIds {
    /// `<client id>.`
    prefix: String,
}

impl CorrelationIds {
    pub(crate) fn new(client_id: &str) -> Self {
        Self {
            prefix: format!("{client_id}."),
        }
    }

    /// The id of call `sequence` with `tag`.
    pub(crate) fn format(&self, sequence: u64, tag: u64) -> String {
        let mut id = String::with_capacity(self.prefix.len() + 33);
        id.push_str(&self.prefix);
        digits::push_hex(&mut id, sequence);
        id.push('.');
        digits::push_hex(&mut id, tag);
        id
    }

    /// The sequence number and tag of `id`, if it is one of this client's.
    pub(crate) fn parse(&self, id: &str) -> Option<(u64, u64)> {
        let (sequence, tag) = id.strip_prefix(self.prefix.as_str())?.split_once('.')?;
        Some((digits::parse_hex(sequence)?, digits::parse_hex(tag)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_round_trip_and_refuse_other_clients_ids() {
        let ids = CorrelationIds::new("4f1c");
        let id = ids.format(1, 0x9b3d_2a8c_71f0_4e65);
        assert_eq!(id, "4f1c.1.9b3d2a8c71f04e65");
        assert_eq!(ids.parse(&id), Some((1, 0x9b3d_2a8c_71f0_4e65)));
        for other in [
            "4f1d.1.2",
            "4f1c.1",
            "4f1c.x.2",
            "4f1c..2",
            "",
            "4f1c.1.2.3",
        ] {
            assert_eq!(ids.parse(other), None, "{other}");
        }
    }

    #[test]
    fn expirations_are_whole_milliseconds_within_what_the_broker_accepts() {
        assert_eq!(expiration(Duration::from_secs(30)), "30000");
        assert_eq!(expiration(Duration::ZERO), "1");
        assert_eq!(expiration(Duration::from_micros(10)), "1");
        assert_eq!(expiration(Duration::MAX), "315360000000");
    }
}
