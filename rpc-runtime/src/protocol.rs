//! Wire protocol v1: the bytes and AMQP properties of requests and replies.
//!
//! Everything another implementation must match lives here, and
//! `docs/PROTOCOL.md` describes the same rules for readers in other languages:
//!
//! - a request body is a MessagePack array of the arguments in declaration
//!   order, structs encoded as maps keyed by field name;
//! - a reply body is a MessagePack map with exactly one key: `ok`, `err` or
//!   `fault`;
//! - requests and replies carry `content_type = application/msgpack`.

use crate::error::{Fault, FaultKind};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fmt;

/// The `content_type` of every request and reply.
pub const CONTENT_TYPE: &str = "application/msgpack";

/// The pseudo-queue of RabbitMQ's direct reply-to.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Prefix of the exclusive reply queues that clients of this framework declare.
///
/// Servers reply by default only to these queues and to direct reply-to
/// addresses, so that a request cannot make a server publish into an
/// arbitrary application queue.
pub const REPLY_QUEUE_PREFIX: &str = "rpc-reply.";

/// Prefix of the names the broker gives to server-named queues
/// (`queue.declare` with an empty name), as the RabbitMQ tutorial's clients
/// declare their reply queues.
///
/// The broker refuses client-chosen queue names that start with `amq.`, so a
/// queue named `amq.gen-*` was always named by the broker, for the connection
/// that declared it: servers may reply to it without being turned against
/// another application's queue.
pub const SERVER_NAMED_QUEUE_PREFIX: &str = "amq.gen-";

/// The longest name AMQP allows for a queue (a short string).
pub const MAX_QUEUE_NAME: usize = 255;

/// The longest `expiration` a request carries: ten years
/// (315,360,000,000 ms), the most RabbitMQ accepts. The broker refuses a
/// larger one (`PRECONDITION_FAILED - invalid expiration: value_too_large`)
/// by closing the channel, which would fail every other call in flight on
/// it; a call with a longer timeout waits for its reply as long as it says,
/// and its request expires after ten years in the queue.
pub const MAX_EXPIRATION: std::time::Duration = std::time::Duration::from_millis(315_360_000_000);

/// Deepest nesting of arrays and maps accepted in a request or reply.
///
/// Deeper input is refused rather than recursed into, so that a hostile
/// message cannot exhaust the stack of the task decoding it.
pub const MAX_NESTING: usize = 128;

/// The first capacity of a body being encoded: most bodies fit, so that
/// encoding them takes one allocation rather than a series of regrowths.
const INITIAL_BUFFER: usize = 128;

/// The key of a reply map.
const OK: &str = "ok";
const ERR: &str = "err";
const FAULT: &str = "fault";

fn serializer(
    buf: &mut Vec<u8>,
) -> rmp_serde::Serializer<&mut Vec<u8>, impl rmp_serde::config::SerializerConfig> {
    // Named struct fields ("maps keyed by field name") so that other languages
    // can read structs without knowing their field order.
    rmp_serde::Serializer::new(buf).with_struct_map()
}

/// Encodes the arguments of one call: `[arg0, arg1, ...]`.
///
/// Generated client stubs push each argument in declaration order; the first
/// argument that fails to serialize is remembered and reported by
/// [`ArgsEncoder::finish`].
#[derive(Debug)]
pub struct ArgsEncoder {
    buf: Vec<u8>,
    error: Option<ArgsEncodeError>,
}

/// An argument that could not be serialized.
#[derive(Debug, Clone)]
pub struct ArgsEncodeError {
    /// The name of the argument, as declared in the trait.
    pub argument: &'static str,
    /// What the serializer reported.
    pub message: String,
}

impl fmt::Display for ArgsEncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "argument `{}`: {}", self.argument, self.message)
    }
}

impl ArgsEncoder {
    /// Starts an argument array of `count` elements.
    pub fn new(count: usize) -> Self {
        let mut buf = Vec::with_capacity(INITIAL_BUFFER.max(16 + 8 * count));
        // Writing into a Vec cannot fail, and an RPC method cannot have more
        // than u32::MAX arguments.
        let _ = rmp::encode::write_array_len(&mut buf, count as u32);
        Self { buf, error: None }
    }

    /// Appends the next argument.
    pub fn arg<T: Serialize + ?Sized>(&mut self, argument: &'static str, value: &T) {
        if self.error.is_some() {
            return;
        }
        if let Err(error) = value.serialize(&mut serializer(&mut self.buf)) {
            self.error = Some(ArgsEncodeError {
                argument,
                message: error.to_string(),
            });
        }
    }

    /// The encoded body, or the first argument that failed to serialize.
    pub fn finish(self) -> Result<Vec<u8>, ArgsEncodeError> {
        match self.error {
            None => Ok(self.buf),
            Some(error) => Err(error),
        }
    }
}

/// Decodes the arguments of one request, checking their count, their types and
/// that nothing follows them.
#[derive(Debug)]
pub struct ArgsDecoder<'a> {
    rest: &'a [u8],
    index: usize,
}

impl<'a> ArgsDecoder<'a> {
    /// Reads the array header and checks that it holds `count` arguments.
    pub fn new(body: &'a [u8], count: usize) -> Result<Self, Fault> {
        if body.is_empty() {
            return Err(Fault::new(
                FaultKind::BadRequest,
                format!("empty body: expected a MessagePack array of {count} argument(s)"),
            ));
        }
        let mut rest = body;
        let len = rmp::decode::read_array_len(&mut rest).map_err(|error| {
            Fault::new(
                FaultKind::BadRequest,
                format!(
                    "the body is not a MessagePack array of {count} argument(s): {}",
                    DisplayValueReadError(&error)
                ),
            )
        })?;
        if len as usize != count {
            return Err(Fault::new(
                FaultKind::BadRequest,
                format!("expected {count} argument(s), got {len}"),
            ));
        }
        Ok(Self { rest, index: 0 })
    }

    /// Decodes the next argument.
    pub fn arg<T: DeserializeOwned>(&mut self, argument: &'static str) -> Result<T, Fault> {
        let index = self.index;
        self.index += 1;
        decode_next(&mut self.rest).map_err(|error| {
            // The decoder's message may quote the value ("invalid type:
            // string \"...\""): the caller, who sent it, sees it; the
            // server's log names the argument and its type only.
            Fault::new(
                FaultKind::BadRequest,
                format!("argument {index} (`{argument}`): {error}"),
            )
            .with_log_message(format!(
                "argument {index} (`{argument}`) is not a valid `{}`",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Checks that no bytes follow the last argument.
    pub fn finish(self) -> Result<(), Fault> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Fault::new(
                FaultKind::BadRequest,
                format!("{} unexpected byte(s) after the arguments", self.rest.len()),
            ))
        }
    }
}

/// Deserializes one value from the front of `input` and advances past it.
fn decode_next<T: DeserializeOwned>(input: &mut &[u8]) -> Result<T, rmp_serde::decode::Error> {
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
fn value_len(input: &[u8]) -> Option<usize> {
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
fn decode_exact<T: DeserializeOwned>(mut input: &[u8]) -> Result<T, String> {
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

struct DisplayValueReadError<'a>(&'a rmp::decode::ValueReadError);

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

fn encode_entry<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, Fault> {
    let mut buf = Vec::with_capacity(INITIAL_BUFFER);
    // Writes into a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut buf, 1);
    let _ = rmp::encode::write_str(&mut buf, key);
    match value.serialize(&mut serializer(&mut buf)) {
        Ok(()) => Ok(buf),
        Err(error) => Err(Fault::new(
            FaultKind::Internal,
            format!("the server could not encode its reply: {error}"),
        )),
    }
}

/// Encodes `{"ok": value}`.
pub fn encode_ok<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Fault> {
    encode_entry(OK, value)
}

/// Encodes `{"ok": value}` or `{"err": error}`.
pub fn encode_result<T: Serialize, E: Serialize>(result: &Result<T, E>) -> Result<Vec<u8>, Fault> {
    match result {
        Ok(value) => encode_entry(OK, value),
        Err(error) => encode_entry(ERR, error),
    }
}

/// The body of a fault reply: `{"fault": {"kind": K, "message": text}}`.
#[derive(Serialize, Deserialize)]
struct FaultBody<'a> {
    kind: &'a str,
    message: &'a str,
}

#[derive(Deserialize)]
struct OwnedFaultBody {
    kind: String,
    message: String,
}

/// Encodes `{"fault": {"kind": K, "message": text}}`.
pub fn encode_fault(fault: &Fault) -> Vec<u8> {
    let body = FaultBody {
        kind: fault.kind().as_str(),
        message: fault.message(),
    };
    // Two strings always serialize.
    encode_entry(FAULT, &body).unwrap_or_default()
}

/// What a reply says, with its value still encoded.
#[derive(Debug)]
pub(crate) enum Reply<'a> {
    /// `{"ok": value}`.
    Ok(&'a [u8]),
    /// `{"err": value}`.
    Err(&'a [u8]),
    /// `{"fault": ...}`, decoded.
    Fault(Fault),
}

impl<'a> Reply<'a> {
    /// Splits a reply body into its key and the encoded value.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, String> {
        let mut rest = body;
        let len = rmp::decode::read_map_len(&mut rest).map_err(|error| {
            format!(
                "the reply is not a MessagePack map: {}",
                DisplayValueReadError(&error)
            )
        })?;
        if len != 1 {
            return Err(format!("the reply map has {len} keys instead of 1"));
        }
        let mut key = [0u8; 8];
        let key = rmp::decode::read_str(&mut rest, &mut key)
            .map_err(|error| format!("the reply key is not `ok`, `err` or `fault`: {error:?}"))?;
        match key {
            OK => Ok(Reply::Ok(rest)),
            ERR => Ok(Reply::Err(rest)),
            FAULT => {
                let body: OwnedFaultBody = decode_exact(rest)
                    .map_err(|error| format!("the fault in the reply is malformed: {error}"))?;
                Ok(Reply::Fault(Fault::new(
                    FaultKind::from_wire(&body.kind),
                    body.message,
                )))
            }
            other => Err(format!(
                "the reply key is `{other}` instead of `ok`, `err` or `fault`"
            )),
        }
    }
}

/// Decodes the value of an `ok` or `err` reply.
pub(crate) fn decode_value<T: DeserializeOwned>(value: &[u8]) -> Result<T, String> {
    decode_exact(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Point {
        x: i32,
        y: i32,
    }

    fn encode(args: &[&dyn erased::Arg]) -> Vec<u8> {
        let mut encoder = ArgsEncoder::new(args.len());
        for arg in args {
            arg.push(&mut encoder);
        }
        encoder.finish().expect("encodes")
    }

    mod erased {
        use super::ArgsEncoder;
        pub(super) trait Arg {
            fn push(&self, encoder: &mut ArgsEncoder);
        }
        impl<T: serde::Serialize> Arg for T {
            fn push(&self, encoder: &mut ArgsEncoder) {
                encoder.arg("a", self);
            }
        }
    }

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

    #[test]
    fn no_arguments_encode_as_an_empty_array() {
        assert_eq!(encode(&[]), vec![0x90]);
        let decoder = ArgsDecoder::new(&[0x90], 0).expect("decodes");
        decoder.finish().expect("nothing left");
    }

    #[test]
    fn structs_are_maps_keyed_by_field_name() {
        let body = encode(&[&7u32, &Point { x: 1, y: -2 }]);
        // [7, {"x": 1, "y": -2}]
        assert_eq!(
            body,
            vec![0x92, 0x07, 0x82, 0xa1, b'x', 0x01, 0xa1, b'y', 0xfe]
        );
        let mut decoder = ArgsDecoder::new(&body, 2).expect("header");
        assert_eq!(decoder.arg::<u32>("n").expect("n"), 7);
        assert_eq!(decoder.arg::<Point>("p").expect("p"), Point { x: 1, y: -2 });
        decoder.finish().expect("nothing left");
    }

    #[test]
    fn wrong_count_type_range_and_trailing_bytes_are_bad_requests() {
        let two = encode(&[&1u32, &2u32]);
        let fault = ArgsDecoder::new(&two, 1).expect_err("count");
        assert_eq!(fault.kind(), &FaultKind::BadRequest);
        assert!(fault.message().contains("expected 1 argument(s), got 2"));

        let text = encode(&[&"thirty"]);
        let mut decoder = ArgsDecoder::new(&text, 1).expect("header");
        let fault = decoder.arg::<u32>("n").expect_err("type");
        assert!(fault.message().contains("argument 0 (`n`)"), "{fault}");

        let big = encode(&[&(1u64 << 40)]);
        let mut decoder = ArgsDecoder::new(&big, 1).expect("header");
        decoder.arg::<u32>("n").expect_err("out of range");

        let mut trailing = encode(&[&1u32]);
        trailing.push(0xc0);
        let mut decoder = ArgsDecoder::new(&trailing, 1).expect("header");
        decoder.arg::<u32>("n").expect("n");
        let fault = decoder.finish().expect_err("trailing");
        assert!(fault.message().contains("1 unexpected byte(s)"));

        let fault = ArgsDecoder::new(&[], 1).expect_err("empty");
        assert!(fault.message().starts_with("empty body"));
        let fault = ArgsDecoder::new(&[0xc1], 1).expect_err("invalid marker");
        assert_eq!(fault.kind(), &FaultKind::BadRequest);
    }

    #[test]
    fn nesting_is_bounded() {
        let mut body = vec![0x91];
        body.extend(std::iter::repeat_n(0x91, 10_000));
        body.push(0x01);
        let mut decoder = ArgsDecoder::new(&body, 1).expect("header");
        let fault = decoder
            .arg::<serde_value::Nested>("deep")
            .expect_err("too deep");
        assert_eq!(fault.kind(), &FaultKind::BadRequest);
    }

    mod serde_value {
        /// A recursive type, like a JSON value, to feed deep input to.
        #[derive(Debug, serde::Deserialize)]
        #[serde(untagged)]
        pub(super) enum Nested {
            List(#[allow(dead_code)] Vec<Nested>),
            Leaf(#[allow(dead_code)] u8),
        }
    }

    #[test]
    fn replies_round_trip() {
        let ok = encode_result::<u64, String>(&Ok(832040)).expect("ok");
        match Reply::parse(&ok).expect("parses") {
            Reply::Ok(value) => assert_eq!(decode_value::<u64>(value).expect("u64"), 832040),
            other => panic!("unexpected {other:?}"),
        }
        let err = encode_result::<u64, String>(&Err("overflow".into())).expect("err");
        match Reply::parse(&err).expect("parses") {
            Reply::Err(value) => assert_eq!(decode_value::<String>(value).expect("e"), "overflow"),
            other => panic!("unexpected {other:?}"),
        }
        let fault = encode_fault(&Fault::new(FaultKind::HandlerPanicked, "boom".into()));
        match Reply::parse(&fault).expect("parses") {
            Reply::Fault(fault) => {
                assert_eq!(fault.kind(), &FaultKind::HandlerPanicked);
                assert_eq!(fault.message(), "boom");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        for body in [
            &[][..],
            &[0xc1],
            &[0x80],
            &[0x81, 0xa2, b'n', b'o', 0x01],
            &[0x82, 0xa2, b'o', b'k', 0x01, 0xa2, b'o', b'k', 0x01],
            &[0x81, 0xa5, b'f', b'a', b'u', b'l', b't', 0x01],
        ] {
            assert!(Reply::parse(body).is_err(), "{body:?}");
        }
    }
}
