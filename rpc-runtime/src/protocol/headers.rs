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

impl RequestHeaders {
    /// Whether they may be too large for a frame: only metadata and a
    /// `tracestate` have no bound (the rest take under 100 bytes).
    pub(crate) fn unbounded(&self) -> bool {
        self.tracestate.is_some() || !self.metadata.is_empty()
    }

    /// Their size as an AMQP field table (AMQP 0-9-1 §4.2.5.5): a 4-byte
    /// length, then per entry the name as a short string, a type byte and
    /// the value (a long string's 4-byte length and bytes, or 8 bytes for
    /// the deadline); 0 if there are none, as the table is then left out.
    pub(crate) fn encoded_len(&self) -> usize {
        let text = |name: &str, value: usize| 1 + name.len() + 1 + 4 + value;
        let mut size = 0;
        if self.traceparent.is_some() {
            size += text(TRACEPARENT, TRACEPARENT_LEN);
        }
        if let Some(tracestate) = &self.tracestate {
            size += text(TRACESTATE, tracestate.len());
        }
        if self.deadline.is_some() {
            size += 1 + DEADLINE.len() + 1 + 8;
        }
        for (name, value) in self.metadata.iter() {
            size += text(name, value.len());
        }
        if size == 0 { 0 } else { 4 + size }
    }
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

/// The longest `tracestate` passed on, in bytes: the 512 characters W3C
/// asks every vendor to propagate. A longer one is cut to fit, as the
/// specification says: its entries over 128 bytes first, then from the
/// end.
pub(crate) const TRACESTATE_MAX: usize = 512;

/// The most entries (list members) a `tracestate` may have (W3C).
const TRACESTATE_MAX_ENTRIES: usize = 32;

/// A `tracestate` as a receiver passes it on, or `None` if there is none to
/// pass on: W3C Trace Context's rules for a receiver. One that breaks the
/// format (a key or value with characters it does not allow, more than 32
/// entries, a key given twice) is discarded whole; empty entries are
/// dropped; one over [`TRACESTATE_MAX`] bytes is cut to fit. A caller
/// chooses this header and every call the handler makes carries it on, so
/// a long one must not reach the next request: with the handler's own
/// headers, it could overflow the AMQP frame and cost the connection.
pub(crate) fn tracestate(value: &str) -> Option<String> {
    let mut entries: Vec<&str> = Vec::new();
    for entry in value.split(',') {
        let entry = entry.trim_matches([' ', '\t']);
        if entry.is_empty() {
            continue;
        }
        let (key, member) = entry.split_once('=')?;
        if !is_tracestate_key(key) || !is_tracestate_value(member) {
            return None;
        }
        if entries.len() == TRACESTATE_MAX_ENTRIES
            || entries
                .iter()
                .any(|kept| kept.split_once('=').map(|(k, _)| k) == Some(key))
        {
            return None;
        }
        entries.push(entry);
    }
    let length = |entries: &[&str]| {
        entries.iter().map(|entry| entry.len()).sum::<usize>() + entries.len().saturating_sub(1)
    };
    if length(&entries) > TRACESTATE_MAX {
        entries.retain(|entry| entry.len() <= 128);
        while length(&entries) > TRACESTATE_MAX {
            entries.pop();
        }
    }
    (!entries.is_empty()).then(|| entries.join(","))
}

/// A `tracestate` key (W3C): a lower-case letter then up to 255 of `a-z`,
/// `0-9`, `_`, `-`, `*`, `/`; or `tenant@system`, with a tenant of up to
/// 241 such characters (it may start with a digit) and a system of up to 14
/// starting with a letter.
fn is_tracestate_key(key: &str) -> bool {
    let allowed =
        |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit() || b"_-*/".contains(&byte);
    let simple = |key: &str, max: usize, first_digit: bool| {
        let bytes = key.as_bytes();
        !bytes.is_empty()
            && bytes.len() <= max
            && (bytes[0].is_ascii_lowercase() || (first_digit && bytes[0].is_ascii_digit()))
            && bytes.iter().all(|&byte| allowed(byte))
    };
    match key.split_once('@') {
        None => simple(key, 256, false),
        Some((tenant, system)) => simple(tenant, 241, true) && simple(system, 14, false),
    }
}

/// A `tracestate` value (W3C): up to 256 printable ASCII characters other
/// than `,` and `=`, spaces allowed but not last.
fn is_tracestate_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 256
        && bytes.last() != Some(&b' ')
        && bytes
            .iter()
            .all(|&byte| (0x20..=0x7e).contains(&byte) && byte != b',' && byte != b'=')
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
    fn a_tracestate_is_passed_on_valid_and_short_or_not_at_all() {
        assert_eq!(
            tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7").as_deref(),
            Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
        );
        assert_eq!(
            tracestate(" , a=1,,\tb@sys=x y ,").as_deref(),
            Some("a=1,b@sys=x y")
        );
        assert_eq!(tracestate("").as_deref(), None);
        assert_eq!(tracestate(" , ").as_deref(), None);
        // Broken: the whole header goes.
        for broken in [
            "Upper=1",
            "a=1,b",
            "a=",
            "a=1=2",
            "a=1,a=2",
            "1a=x",
            "a@=x",
            "a@Sys=x",
            "a=x\u{7f}",
            "a=x\ny",
        ] {
            assert_eq!(tracestate(broken), None, "{broken}");
        }
        let many: Vec<String> = (0..33).map(|n| format!("k{n}=v")).collect();
        assert_eq!(tracestate(&many.join(",")), None);
        assert!(tracestate(&many[..32].join(",")).is_some());
        // Too long: entries over 128 bytes go first, then from the end.
        let long = format!("big={}", "v".repeat(200));
        let entries: Vec<String> = (0..40)
            .map(|n| format!("k{n:02}={}", "v".repeat(20)))
            .collect();
        let value = format!("{},{long},{}", entries[0], entries[1..30].join(","));
        let kept = tracestate(&value).expect("cut, not dropped");
        assert!(kept.len() <= TRACESTATE_MAX, "{}", kept.len());
        assert!(!kept.contains("big="));
        assert!(kept.starts_with(&format!("{},{}", entries[0], entries[1])));
        assert_eq!(kept.split(',').count(), kept.len().div_ceil(25));
        // Nothing left to keep.
        let wide = "w".repeat(200);
        assert_eq!(tracestate(&format!("{long},x={wide},y={wide}")), None);
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
