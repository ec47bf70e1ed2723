//! A request's headers (PROTOCOL.md §2, "Headers"): trace context, the
//! caller's deadline, and call metadata, in the AMQP `headers` table.
//!
//! | header | type | what |
//! |---|---|---|
//! | `traceparent` | string | W3C Trace Context: `00-<trace id>-<parent span id>-<flags>` |
//! | `tracestate` | string | W3C Trace Context, vendor data, when the caller has any |
//! | `rpc-deadline` | signed 64-bit integer | when the caller gives up, in milliseconds since the Unix epoch |
//! | anything else | string | call metadata, for the handler and the server's interceptors |
//!
//! Metadata names are ASCII, at most 255 bytes, and may not be
//! `traceparent`, `tracestate`, or start with `rpc-` or `x-` (the broker's
//! and this protocol's own).

use crate::metadata::{InvalidHeader, Metadata};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// W3C Trace Context: the trace and the caller's span.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// W3C Trace Context: vendor-specific trace data.
pub(crate) const TRACESTATE: &str = "tracestate";
/// The caller's deadline, in milliseconds since the Unix epoch.
pub(crate) const DEADLINE: &str = "rpc-deadline";

/// Prefixes of header names that are not call metadata.
const RESERVED_PREFIXES: &[&str] = &["rpc-", "x-"];

/// The headers of a request, as a client sets them.
#[derive(Debug, Default, Clone)]
pub(crate) struct RequestHeaders {
    /// Formatted as each publication's header table is built: a retry's
    /// copy of these headers then copies no string.
    pub(crate) traceparent: Option<TraceParent>,
    pub(crate) tracestate: Option<String>,
    /// [`deadline_millis`] of the caller's deadline.
    pub(crate) deadline: Option<i64>,
    pub(crate) metadata: Metadata,
}

/// A header's value as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderValue<'a> {
    /// A string (an AMQP long or short string, UTF-8).
    Text(&'a str),
    /// An integer of any width.
    Integer(i64),
    /// Anything else (bytes that are not UTF-8, a table, a float...).
    Other,
}

/// Checks a metadata name.
pub(crate) fn check_name(name: &str) -> Result<(), InvalidHeader> {
    let printable = name.bytes().all(|byte| byte.is_ascii_graphic());
    if name.is_empty() || name.len() > 255 || !printable {
        return Err(InvalidHeader::Name(name.to_owned()));
    }
    let lower = name.to_ascii_lowercase();
    if lower == TRACEPARENT
        || lower == TRACESTATE
        || RESERVED_PREFIXES
            .iter()
            .any(|prefix| lower.starts_with(prefix))
    {
        return Err(InvalidHeader::Reserved(name.to_owned()));
    }
    Ok(())
}

/// A deadline as the header carries it: milliseconds since the Unix epoch,
/// saturating at the ends of `i64`.
pub(crate) fn deadline_millis(deadline: SystemTime) -> i64 {
    match deadline.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The deadline a header value says.
pub(crate) fn deadline_from_millis(millis: i64) -> SystemTime {
    let magnitude = Duration::from_millis(millis.unsigned_abs());
    if millis >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
    .unwrap_or(UNIX_EPOCH)
}

/// A W3C `traceparent`: which trace a request belongs to, and which span of
/// the caller's it is a child of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    /// Bit 0: sampled.
    pub(crate) flags: u8,
}

impl TraceParent {
    /// `00-<32 hex>-<16 hex>-<2 hex>`. Written digit by digit into a
    /// fixed-width buffer, not through `core::fmt` nor `String::push`: one
    /// goes out with every call (callgrind: `core::fmt` was a third of the
    /// instructions of trace propagation, `push` a further 190 a call).
    pub(crate) fn format(&self) -> String {
        let mut text = [b'-'; TRACEPARENT_LEN];
        text[..2].copy_from_slice(b"00");
        write_hex(&mut text[3..19], (self.trace_id >> 64) as u64);
        write_hex(&mut text[19..35], self.trace_id as u64);
        write_hex(&mut text[36..52], self.span_id);
        write_hex(&mut text[53..55], u64::from(self.flags));
        // Hexadecimal digits and dashes: ASCII, so always UTF-8; checked
        // with `from_utf8`, whose ASCII path reads a word at a time
        // (`from_utf8_lossy` went byte by byte: 430 instructions a call).
        std::str::from_utf8(&text).map_or_else(|_| String::new(), str::to_owned)
    }

    /// Reads a `traceparent`; `None` if it is not one (W3C: a receiver then
    /// starts a new trace). Versions above 00 are read as 00, as the
    /// specification asks: what follows their flags, after a dash, is
    /// skipped. Read at fixed offsets, as the format is fixed-width, from
    /// the header's bytes (a `traceparent` that is not UTF-8 is not one).
    pub(crate) fn parse(text: &[u8]) -> Option<Self> {
        let bytes = text.trim_ascii();
        if bytes.len() < TRACEPARENT_LEN || [bytes[2], bytes[35], bytes[52]] != [b'-'; 3] {
            return None;
        }
        let version = hex_value(&bytes[..2])?;
        let longer = bytes.len() > TRACEPARENT_LEN;
        if version == 0xff || (longer && (version == 0 || bytes[TRACEPARENT_LEN] != b'-')) {
            return None;
        }
        let trace_id =
            u128::from(hex_value(&bytes[3..19])?) << 64 | u128::from(hex_value(&bytes[19..35])?);
        let span_id = hex_value(&bytes[36..52])?;
        let flags = u8::try_from(hex_value(&bytes[53..55])?).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            flags,
        })
    }
}

/// The length of a version 00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// Writes the last `out.len()` hexadecimal digits of `value` into `out`, in
/// lower case.
fn write_hex(out: &mut [u8], mut value: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for digit in out.iter_mut().rev() {
        *digit = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// The value of lower-case hexadecimal `digits` (at most 16), or `None` if
/// any is not one (W3C forbids upper case). Without a branch per digit: each
/// digit's value comes from a table whose entries for anything else have
/// their high bits set, checked once at the end (a server reads 50 digits a
/// request; callgrind: about 100 instructions fewer than a branch per digit).
fn hex_value(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut invalid = 0u8;
    for &digit in digits {
        let nibble = HEX_VALUES[usize::from(digit)];
        invalid |= nibble;
        value = value << 4 | u64::from(nibble & 0x0f);
    }
    (invalid & 0xf0 == 0).then_some(value)
}

/// Each byte's value as a lower-case hexadecimal digit; 0xff if it is not one.
const HEX_VALUES: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_round_trip_and_invalid_ones_are_refused() {
        let parent = TraceParent {
            trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            span_id: 0x00f0_67aa_0ba9_02b7,
            flags: 1,
        };
        let text = parent.format();
        assert_eq!(
            text,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(TraceParent::parse(text.as_bytes()), Some(parent));
        // A later version with more fields is read as version 00.
        assert_eq!(
            TraceParent::parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"),
            Some(parent)
        );
        for invalid in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e4736+00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            // The bytes on either side of each range of digits.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b:-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b/-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b`-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01",
        ] {
            assert_eq!(TraceParent::parse(invalid.as_bytes()), None, "{invalid}");
        }
        let mut not_utf8 = *b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        not_utf8[40] = 0xb0;
        assert_eq!(TraceParent::parse(&not_utf8), None);
    }

    #[test]
    fn deadlines_round_trip_in_milliseconds_and_saturate() {
        let deadline = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(deadline_millis(deadline), 1_764_000_000_123);
        assert_eq!(deadline_from_millis(1_764_000_000_123), deadline);
        assert_eq!(
            deadline_from_millis(-5),
            UNIX_EPOCH - Duration::from_millis(5)
        );
        assert_eq!(deadline_millis(UNIX_EPOCH - Duration::from_millis(5)), -5);
    }

    #[test]
    fn metadata_names_exclude_the_protocols_own() {
        for good in ["authorization", "tenant", "X_forwarded"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for reserved in [
            "traceparent",
            "TraceState",
            "rpc-deadline",
            "x-death",
            "X-Match",
        ] {
            assert!(matches!(
                check_name(reserved),
                Err(InvalidHeader::Reserved(_))
            ));
        }
        for bad in ["", "with space", "naïve", &"n".repeat(256)] {
            assert!(
                matches!(check_name(bad), Err(InvalidHeader::Name(_))),
                "{bad}"
            );
        }
    }
}
