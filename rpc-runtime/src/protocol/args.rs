//! The body of a request (PROTOCOL.md §2, "Body"): a MessagePack array of
//! the method's arguments in declaration order, each a value as §3 says.
//!
//! How a server reads a request that holds another number of arguments
//! than its method takes (PROTOCOL.md §6, changing a service):
//!
//! | the request holds | the server |
//! |---|---|
//! | as many as the method takes | decodes each |
//! | fewer (an older client's) | runs the method with `None` for each missing trailing `Option` argument; any other missing argument is a `bad_request` |
//! | more (a newer client's) | ignores the extra trailing ones that are nil (`None`); one that holds a value is a `bad_request`, as the server would drop what the caller asked for |

use super::fault::{Fault, FaultKind};
use super::msgpack::{DisplayValueReadError, INITIAL_BUFFER, decode_next, encode_into};
use serde::{
    Serialize,
    de::{DeserializeOwned, value::UnitDeserializer},
};
use std::fmt;

/// MessagePack's nil, which `None` encodes as.
const NIL: u8 = 0xc0;

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
        if let Err(error) = encode_into(&mut self.buf, value) {
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
    /// How many arguments the request holds.
    sent: usize,
    /// How many the method takes.
    count: usize,
}

impl<'a> ArgsDecoder<'a> {
    /// Reads the array header of the arguments of a method that takes
    /// `count` (the request may hold fewer or more: see the module's table).
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
        Ok(Self {
            rest,
            index: 0,
            sent: len as usize,
            count,
        })
    }

    /// The start of a `bad_request` about the number of arguments.
    fn miscount(&self) -> String {
        format!("expected {} argument(s), got {}", self.count, self.sent)
    }

    /// Decodes the next argument.
    pub fn arg<T: DeserializeOwned>(&mut self, argument: &'static str) -> Result<T, Fault> {
        let index = self.index;
        self.index += 1;
        // Messages count from 1, as `rpc` does.
        let number = index + 1;
        if index >= self.sent {
            // Left out by an older client: only an `Option` reads "nothing"
            // (serde reads it as `None`), any other type refuses it.
            return T::deserialize(UnitDeserializer::<serde::de::value::Error>::new()).map_err(
                |_| {
                    Fault::new(
                        FaultKind::BadRequest,
                        format!(
                            "{}: argument {number} (`{argument}`) is missing, and only trailing \
                             `Option` arguments may be left out",
                            self.miscount()
                        ),
                    )
                },
            );
        }
        decode_next(&mut self.rest).map_err(|error| {
            // The decoder's message may quote the value ("invalid type:
            // string \"...\""): the caller, who sent it, sees it; the
            // server's log names the argument and its type only.
            Fault::new(
                FaultKind::BadRequest,
                format!("argument {number} (`{argument}`): {error}"),
            )
            .with_log_message(format!(
                "argument {number} (`{argument}`) is not a valid `{}`",
                std::any::type_name::<T>()
            ))
        })
    }

    /// Checks the arguments the method does not take (a newer client's:
    /// each must be nil) and that no bytes follow the last one.
    pub fn finish(mut self) -> Result<(), Fault> {
        for index in self.count..self.sent {
            match self.rest.split_first() {
                Some((&NIL, rest)) => self.rest = rest,
                _ => {
                    let number = index + 1;
                    return Err(Fault::new(
                        FaultKind::BadRequest,
                        format!(
                            "{}: argument {number} holds a value and this server's method has no \
                             such argument (a newer client's? upgrade the server, or leave it \
                             out)",
                            self.miscount()
                        ),
                    ));
                }
            }
        }
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
    fn trailing_options_may_be_left_out_and_extra_nils_are_ignored() {
        // An older client's request: `title: Option<String>` left out.
        let old = encode(&[&"Ada"]);
        let mut decoder = ArgsDecoder::new(&old, 2).expect("header");
        assert_eq!(decoder.arg::<String>("name").expect("name"), "Ada");
        assert_eq!(decoder.arg::<Option<String>>("title").expect("None"), None);
        decoder.finish().expect("nothing left");

        // Left out, but not an `Option`: refused, named.
        let mut decoder = ArgsDecoder::new(&old, 2).expect("header");
        decoder.arg::<String>("name").expect("name");
        let fault = decoder.arg::<u32>("times").expect_err("not optional");
        assert_eq!(fault.kind(), &FaultKind::BadRequest);
        assert!(
            fault.message().contains("argument 2 (`times`) is missing"),
            "{fault}"
        );

        // A newer client's request to an older server: a trailing `None` is
        // ignored.
        let new = encode(&[&"Ada", &None::<String>]);
        let mut decoder = ArgsDecoder::new(&new, 1).expect("header");
        assert_eq!(decoder.arg::<String>("name").expect("name"), "Ada");
        decoder.finish().expect("a nil extra argument is ignored");

        // ... and a value in it refused, with bytes after it still checked.
        let new = encode(&[&"Ada", &Some("Dr")]);
        let mut decoder = ArgsDecoder::new(&new, 1).expect("header");
        decoder.arg::<String>("name").expect("name");
        assert!(decoder.finish().is_err());
        let mut body = encode(&[&"Ada", &None::<String>]);
        body.push(0x01);
        let mut decoder = ArgsDecoder::new(&body, 1).expect("header");
        decoder.arg::<String>("name").expect("name");
        let fault = decoder.finish().expect_err("a trailing byte");
        assert!(fault.message().contains("unexpected byte"), "{fault}");
    }

    #[test]
    fn wrong_count_type_range_and_trailing_bytes_are_bad_requests() {
        let two = encode(&[&1u32, &2u32]);
        let mut decoder = ArgsDecoder::new(&two, 1).expect("header");
        assert_eq!(decoder.arg::<u32>("a").expect("a"), 1);
        let fault = decoder
            .finish()
            .expect_err("an extra argument with a value");
        assert_eq!(fault.kind(), &FaultKind::BadRequest);
        assert!(fault.message().contains("expected 1 argument(s), got 2"));
        assert!(
            fault.message().contains("argument 2 holds a value"),
            "{fault}"
        );

        let text = encode(&[&"thirty"]);
        let mut decoder = ArgsDecoder::new(&text, 1).expect("header");
        let fault = decoder.arg::<u32>("n").expect_err("type");
        assert!(fault.message().contains("argument 1 (`n`)"), "{fault}");

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
}
