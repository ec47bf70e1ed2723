//! The headers a hand-written peer's requests carry, to measure what the
//! framework's own headers cost a client library without the framework
//! (issue 13): none by default, as the RabbitMQ tutorial's requests.
//!
//! | peer or setting | header | the client | the server |
//! |---|---|---|---|
//! | `raw-traced`, `amqprs-traced` | `traceparent` | a new trace's, written digit by digit into a fixed-width buffer, as the framework writes it | reads it from the header's bytes, a branch per digit (about 100 instructions a request more than the framework's table of digit values), and starts its own span in that trace, as the framework does |
//! | `BENCH_RAW_DEADLINE=on` (every raw peer) | `rpc-deadline` | the call's deadline, 30 s ahead, in milliseconds since the Unix epoch (a 64-bit integer) | reads it |
//!
//! So `--peers raw-traced,raw` with `BENCH_RAW_DEADLINE=on` gives the cost
//! of exactly what the framework adds when its trace context is on: one
//! more string entry in a table that already holds the deadline.

use std::{
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The W3C header's name.
pub(crate) const TRACEPARENT: &str = "traceparent";
/// The framework's deadline header (PROTOCOL.md §2).
pub(crate) const DEADLINE: &str = "rpc-deadline";

/// Whether every raw peer's requests carry `rpc-deadline`: with
/// `BENCH_RAW_DEADLINE=on`. Read once, as `service::expiration`.
pub(crate) fn deadline() -> bool {
    static DEADLINE: LazyLock<bool> =
        LazyLock::new(|| std::env::var("BENCH_RAW_DEADLINE").is_ok_and(|value| value == "on"));
    *DEADLINE
}

/// A deadline 30 s from now, as the header carries it.
pub(crate) fn deadline_millis() -> i64 {
    let deadline = SystemTime::now() + Duration::from_secs(30);
    deadline.duration_since(UNIX_EPOCH).map_or(0, |since| {
        i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
    })
}

/// The `traceparent` of a new trace's first span.
pub(crate) fn traceparent() -> String {
    let trace_id = fastrand::u128(1..);
    let span_id = fastrand::u64(1..);
    let mut text = [b'-'; 55];
    text[..2].copy_from_slice(b"00");
    write_hex(&mut text[3..19], (trace_id >> 64) as u64);
    write_hex(&mut text[19..35], trace_id as u64);
    write_hex(&mut text[36..52], span_id);
    write_hex(&mut text[53..55], 1);
    std::str::from_utf8(&text).map_or_else(|_| String::new(), str::to_owned)
}

/// The trace a request's `traceparent` names, and the id of the server's
/// own span in it; `None` if it is not one.
pub(crate) fn continue_trace(text: &[u8]) -> Option<(u128, u64)> {
    if text.len() != 55 || [text[2], text[35], text[52]] != [b'-'; 3] {
        return None;
    }
    let trace_id = u128::from(hex(&text[3..19])?) << 64 | u128::from(hex(&text[19..35])?);
    hex(&text[36..52])?;
    Some((trace_id, fastrand::u64(1..)))
}

fn write_hex(out: &mut [u8], mut value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for digit in out.iter_mut().rev() {
        *digit = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

fn hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u64::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_traceparent_is_read_back() {
        let text = super::traceparent();
        assert_eq!(text.len(), 55);
        let (trace_id, span_id) = super::continue_trace(text.as_bytes()).expect("valid");
        assert_eq!(format!("{trace_id:032x}"), text[3..35]);
        assert_ne!(span_id, 0);
        assert_eq!(super::continue_trace(b"00-xyz"), None);
    }
}
