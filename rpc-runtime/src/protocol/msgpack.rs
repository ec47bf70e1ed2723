//! MessagePack as this protocol uses it (PROTOCOL.md §3): the serializer
//! configuration, and decoding with bounded nesting and exact lengths.

use serde::{Serialize, de::DeserializeOwned};
use std::fmt;

/// Deepest nesting of arrays and maps accepted in a request or reply.
///
/// Deeper input is refused rather than recursed into, so that a hostile
/// message cannot exhaust the stack of the task decoding it.
pub(crate) const MAX_NESTING: usize = 128;

/// The first capacity of a body being encoded: most bodies fit, so that
/// encoding them takes one allocation rather than a series of regrowths.
pub(crate) const INITIAL_BUFFER: usize = 128;

/// The serializer of every value: structs as maps keyed by field name.
fn serializer(
    buf: &mut Vec<u8>,
) -> rmp_serde::Serializer<&mut Vec<u8>, impl rmp_serde::config::SerializerConfig> {
    // Named struct fields ("maps keyed by field name") so that other languages
    // can read structs without knowing their field order.
    rmp_serde::Serializer::new(buf).with_struct_map()
}

/// Serializes `value` at the end of `buf`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    buf: &mut Vec<u8>,
    value: &T,
) -> Result<(), rmp_serde::encode::Error> {
    value.serialize(&mut serializer(buf))
}

/// Deserializes one value from the front of `input` and advances past it.
pub(crate) fn decode_next<T: DeserializeOwned>(
    input: &mut &[u8],
) -> Result<T, rmp_serde::decode::Error> {
    let Some(len) = value_len(input) else {
        // Truncated or malformed: the streaming decoder says what is wrong.
        let mut deserializer = rmp_serde::Deserializer::new(input);
        deserializer.set_max_depth(MAX_NESTING);
        return T::deserialize(&mut deserializer);
    };
    let (value, rest) = input.split_at(len);
    // Decoding from a slice reads strings and map keys in place; the
    // streaming decoder copies each into a buffer first.
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(value);
    deserializer.set_max_depth(MAX_NESTING);
    let decoded = T::deserialize(&mut deserializer)?;
    *input = rest;
    Ok(decoded)
}

/// The length in bytes of the MessagePack value at the front of `input`,
/// or `None` if it is truncated or uses a reserved marker.
///
/// Counts the values still to skip instead of recursing, so that no nesting
/// exhausts the stack; every step consumes at least one byte, so hostile
/// lengths cost no more than the input's own size.
pub(crate) fn value_len(input: &[u8]) -> Option<usize> {
    use rmp::Marker;
    fn length(rest: &mut &[u8], bytes: usize) -> Option<u64> {
        let (field, tail) = rest.split_at_checked(bytes)?;
        *rest = tail;
        Some(field.iter().fold(0, |n, byte| n << 8 | u64::from(*byte)))
    }
    let mut rest = input;
    let mut values: u64 = 1;
    while values > 0 {
        values -= 1;
        let marker = rmp::decode::read_marker(&mut rest).ok()?;
        let skip = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                0
            }
            Marker::U8 | Marker::I8 => 1,
            Marker::U16 | Marker::I16 => 2,
            Marker::U32 | Marker::I32 | Marker::F32 => 4,
            Marker::U64 | Marker::I64 | Marker::F64 => 8,
            Marker::FixStr(len) => u64::from(len),
            Marker::Str8 | Marker::Bin8 => length(&mut rest, 1)?,
            Marker::Str16 | Marker::Bin16 => length(&mut rest, 2)?,
            Marker::Str32 | Marker::Bin32 => length(&mut rest, 4)?,
            Marker::FixArray(len) => {
                values = values.saturating_add(u64::from(len));
                0
            }
            Marker::Array16 => {
                values = values.saturating_add(length(&mut rest, 2)?);
                0
            }
            Marker::Array32 => {
                values = values.saturating_add(length(&mut rest, 4)?);
                0
            }
            Marker::FixMap(len) => {
                values = values.saturating_add(2 * u64::from(len));
                0
            }
            Marker::Map16 => {
                values = values.saturating_add(2 * length(&mut rest, 2)?);
                0
            }
            Marker::Map32 => {
                values = values.saturating_add(2 * length(&mut rest, 4)?);
                0
            }
            // An extension: its type byte, then its data.
            Marker::FixExt1 => 2,
            Marker::FixExt2 => 3,
            Marker::FixExt4 => 5,
            Marker::FixExt8 => 9,
            Marker::FixExt16 => 17,
            Marker::Ext8 => length(&mut rest, 1)? + 1,
            Marker::Ext16 => length(&mut rest, 2)? + 1,
            Marker::Ext32 => length(&mut rest, 4)? + 1,
            Marker::Reserved => return None,
        };
        rest = rest.get(usize::try_from(skip).ok()?..)?;
    }
    Some(input.len() - rest.len())
}

/// Deserializes exactly one value from `input`: trailing bytes are an error.
pub(crate) fn decode_exact<T: DeserializeOwned>(mut input: &[u8]) -> Result<T, String> {
    let value = decode_next(&mut input).map_err(|error| error.to_string())?;
    if input.is_empty() {
        Ok(value)
    } else {
        Err(format!(
            "{} unexpected byte(s) after the value",
            input.len()
        ))
    }
}

/// A decoding error of a MessagePack header, said for humans.
pub(crate) struct DisplayValueReadError<'a>(pub(crate) &'a rmp::decode::ValueReadError);

impl fmt::Display for DisplayValueReadError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            rmp::decode::ValueReadError::TypeMismatch(marker) => {
                write!(f, "found {marker:?} instead")
            }
            other => write!(f, "{other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    /// Serialized as MessagePack `bin`, not as an array of integers.
    struct Bytes(Vec<u8>);

    impl Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    #[test]
    fn value_len_finds_the_end_of_every_kind_of_value() {
        use std::collections::BTreeMap;
        #[derive(Serialize)]
        struct Sample {
            name: String,
            bytes: Bytes,
            values: Vec<f64>,
            integers: (u8, i8, u16, i16, u32, i32, u64, i64),
            others: (f32, bool, Option<()>),
            map: BTreeMap<String, Vec<u32>>,
        }
        let mut values: Vec<Vec<u8>> = Vec::new();
        for size in [0usize, 5, 31, 32, 255, 256, 65_535, 65_536] {
            let sample = Sample {
                name: "n".repeat(size),
                bytes: Bytes(vec![7; size]),
                values: vec![1.5; size.min(300)],
                integers: (1, -1, 300, -300, 70_000, -70_000, u64::MAX, i64::MIN),
                others: (0.5, true, None),
                map: (0..size.min(20))
                    .map(|i| (i.to_string(), vec![9; i]))
                    .collect(),
            };
            values.push(rmp_serde::to_vec_named(&sample).expect("encodes"));
        }
        for (len, data_len) in [
            (1, 1),
            (2, 2),
            (4, 4),
            (8, 8),
            (16, 16),
            (3, 3),
            (300, 300),
            (70_000, 70_000),
        ] {
            let mut ext = Vec::new();
            rmp::encode::write_ext_meta(&mut ext, len, 5).expect("meta");
            ext.extend(std::iter::repeat_n(0u8, data_len as usize));
            values.push(ext);
        }
        values.push(vec![0xc0]); // nil
        for value in values {
            let mut with_more = value.clone();
            with_more.extend([0x01, 0x02]);
            assert_eq!(value_len(&with_more), Some(value.len()));
            for cut in [0, 1, value.len() / 2, value.len() - 1] {
                if cut >= value.len() {
                    continue;
                }
                assert_eq!(
                    value_len(&value[..cut]),
                    None,
                    "cut at {cut} of {}",
                    value.len()
                );
            }
        }
        assert_eq!(value_len(&[0xc1]), None, "reserved marker");
        // A million nested arrays: counted, never recursed into.
        let mut deep = vec![0x91; 1_000_000];
        deep.push(0x00);
        assert_eq!(value_len(&deep), Some(deep.len()));
        // A length far beyond the input ends with the input.
        assert_eq!(value_len(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x00]), None);
    }

    #[test]
    fn value_len_agrees_with_the_streaming_decoder_on_arbitrary_bytes() {
        // xorshift: deterministic, no dependency.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let len = 1 + (next() % 40) as usize;
            let input: Vec<u8> = (0..len)
                .map(|_| match next() % 4 {
                    // Mostly small lengths and containers, so that values end
                    // inside the input.
                    0 => 0x90 | (next() % 4) as u8,
                    1 => 0x80 | (next() % 3) as u8,
                    2 => (next() % 8) as u8,
                    _ => next() as u8,
                })
                .collect();
            let mut rest = input.as_slice();
            let mut streaming = rmp_serde::Deserializer::new(&mut rest);
            streaming.set_max_depth(usize::MAX);
            let streamed = serde::de::IgnoredAny::deserialize(&mut streaming).ok();
            let streamed = streamed.map(|_| input.len() - rest.len());
            match (value_len(&input), streamed) {
                (Some(counted), Some(streamed)) => assert_eq!(counted, streamed, "{input:02x?}"),
                // The streaming decoder refuses invalid UTF-8 and the like
                // that the counter steps over: those are decoding errors
                // either way.
                (Some(_), None) => {}
                (None, streamed) => assert_eq!(streamed, None, "{input:02x?}"),
            }
        }
    }
}
