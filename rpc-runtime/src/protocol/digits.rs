//! Integers written into and read from the protocol's strings (correlation
//! ids, expirations) without `core::fmt`, which took three quarters of the
//! instructions spent registering a call.

/// Appends `value` in lower-case hexadecimal, without leading zeros.
pub(crate) fn push_hex(out: &mut String, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = DIGITS[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// Reads what [`push_hex`] writes: 1 to 16 lower-case hexadecimal digits.
pub(crate) fn parse_hex(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 16 {
        return None;
    }
    text.bytes().try_fold(0u64, |value, digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u64::from(nibble))
    })
}

/// `value` in decimal.
pub(crate) fn decimal(value: u64) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = value;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8.
    std::str::from_utf8(&digits[start..])
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_matches_format() {
        for value in [0, 1, 15, 16, 255, 0xdead_beef, u64::MAX] {
            let mut text = String::new();
            push_hex(&mut text, value);
            assert_eq!(text, format!("{value:x}"));
            assert_eq!(parse_hex(&text), Some(value));
        }
        for bad in ["", "g", "DEAD", "12345678901234567", "-1", "1 "] {
            assert_eq!(parse_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decimal_matches_format() {
        for value in [0, 1, 9, 10, 30_000, u64::MAX] {
            assert_eq!(decimal(value), value.to_string());
        }
    }
}
