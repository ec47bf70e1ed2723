//! A reply (PROTOCOL.md §5): its properties, and its body, a MessagePack
//! map of exactly one key, `ok`, `err` or `fault`.

use super::fault::{Fault, FaultKind};
use super::{
    CONTENT_TYPE,
    msgpack::{DisplayValueReadError, INITIAL_BUFFER, decode_exact, encode_into},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The keys of a reply map.
const OK: &str = "ok";
const ERR: &str = "err";
const FAULT: &str = "fault";

/// The properties of a reply: the request's `correlation_id`, byte for
/// byte (absent if the request had none), and the content type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyProperties<'a> {
    pub(crate) correlation_id: Option<&'a str>,
    pub(crate) content_type: &'static str,
}

impl<'a> ReplyProperties<'a> {
    /// The properties of the reply to a request with `correlation_id`.
    pub(crate) fn answering(correlation_id: Option<&'a str>) -> Self {
        Self {
            correlation_id,
            content_type: CONTENT_TYPE,
        }
    }
}

/// Encodes `{key: value}`.
fn encode_entry<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, Fault> {
    let mut buf = Vec::with_capacity(INITIAL_BUFFER);
    // Writes into a Vec cannot fail.
    let _ = rmp::encode::write_map_len(&mut buf, 1);
    let _ = rmp::encode::write_str(&mut buf, key);
    match encode_into(&mut buf, value) {
        Ok(()) => Ok(buf),
        Err(error) => Err(Fault::new(
            FaultKind::Internal,
            format!("the server could not encode its reply: {error}"),
        )),
    }
}

/// Encodes `{"ok": value}`.
pub fn encode_ok<T: Serialize + ?Sized>(value: &T) -> Result<ReplyBody, Fault> {
    Ok(ReplyBody {
        bytes: encode_entry(OK, value)?,
        is_error: false,
    })
}

/// Encodes `{"ok": value}` or `{"err": error}`.
pub fn encode_result<T: Serialize, E: Serialize>(
    result: &Result<T, E>,
) -> Result<ReplyBody, Fault> {
    Ok(match result {
        Ok(value) => ReplyBody {
            bytes: encode_entry(OK, value)?,
            is_error: false,
        },
        Err(error) => ReplyBody {
            bytes: encode_entry(ERR, error)?,
            is_error: true,
        },
    })
}

/// An encoded reply body, as a dispatcher returns it: `{"ok": value}`, or
/// `{"err": error}` for a method that returned its own error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyBody {
    pub(crate) bytes: Vec<u8>,
    pub(crate) is_error: bool,
}

impl ReplyBody {
    /// The MessagePack bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether it is an `err` reply: the method returned its own error.
    pub fn is_error(&self) -> bool {
        self.is_error
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
pub(crate) fn encode_fault(fault: &Fault) -> Vec<u8> {
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

    #[test]
    fn replies_round_trip() {
        let ok = encode_result::<u64, String>(&Ok(832040)).expect("ok");
        match Reply::parse(ok.as_bytes()).expect("parses") {
            Reply::Ok(value) => assert_eq!(decode_value::<u64>(value).expect("u64"), 832040),
            other => panic!("unexpected {other:?}"),
        }
        let err = encode_result::<u64, String>(&Err("overflow".into())).expect("err");
        match Reply::parse(err.as_bytes()).expect("parses") {
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
