//! What a request must look like before a server runs its method.
//!
//! A request is checked in this order; the first rule it breaks decides its
//! fate, and its method does not run:
//!
//! 1. its `reply_to`, if any, must be an address the server may publish to
//!    ([`ReplyToPolicy`](crate::ReplyToPolicy)); otherwise it gets **no reply** (replying would be
//!    the attack) and is rejected;
//! 2. with a `reply_to`, it must have a `correlation_id` (`bad_request`);
//! 3. its `content_type`, if any, must be MessagePack, and it must have no
//!    `content_encoding` (`unsupported_content_type`);
//! 4. its body must be at most the server's maximum request size
//!    (`request_too_large`);
//! 5. it must have a `type` naming the method (`unknown_method`).
//!
//! The body itself is then decoded by the service's dispatcher
//! (`bad_request` if it is not the method's arguments).

use crate::{
    protocol::fault::{Fault, FaultKind},
    protocol::{
        CONTENT_TYPE,
        reply_address::ReplyToPolicy,
        request::{MSGPACK_CONTENT_TYPES, ReceivedProperties},
    },
};

/// What a server does with a request before running anything.
#[derive(Debug)]
pub(crate) enum Admission<'a> {
    /// Run `method`.
    Run { method: &'a str },
    /// Do not run it; reply with the fault (if it has a `reply_to`).
    Fault(Fault),
    /// Do not run it, and do not reply: its `reply_to` is not allowed.
    Refuse { reply_to: &'a str },
}

/// The rules a server applies to requests.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) reply_to: ReplyToPolicy,
    pub(crate) max_request_size: usize,
}

impl Rules {
    /// Applies the rules (see the module's documentation) to one request.
    pub(crate) fn admit<'a>(
        &self,
        properties: ReceivedProperties<'a>,
        body_len: usize,
    ) -> Admission<'a> {
        if let Some(reply_to) = properties.reply_to {
            if !self.reply_to.allows(reply_to) {
                return Admission::Refuse { reply_to };
            }
            if properties.correlation_id.is_none() {
                return fault(
                    FaultKind::BadRequest,
                    "a request with a `reply_to` needs a `correlation_id`".to_owned(),
                );
            }
        }
        if let Some(content_type) = properties.content_type
            && !MSGPACK_CONTENT_TYPES.contains(&content_type)
        {
            return fault(
                FaultKind::UnsupportedContentType,
                format!("content_type `{content_type}` is not supported: send `{CONTENT_TYPE}`"),
            );
        }
        if let Some(encoding) = properties.content_encoding {
            return fault(
                FaultKind::UnsupportedContentType,
                format!("content_encoding `{encoding}` is not supported: send the body as is"),
            );
        }
        if body_len > self.max_request_size {
            return fault(
                FaultKind::RequestTooLarge,
                format!(
                    "the body has {body_len} bytes; this server accepts at most {}",
                    self.max_request_size
                ),
            );
        }
        match properties.method {
            Some(method) => Admission::Run { method },
            None => fault(
                FaultKind::UnknownMethod,
                "the request has no `type` property naming the method".to_owned(),
            ),
        }
    }
}

fn fault(kind: FaultKind, message: String) -> Admission<'static> {
    Admission::Fault(Fault::new(kind, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            reply_to: ReplyToPolicy::default(),
            max_request_size: 10,
        }
    }

    fn request() -> ReceivedProperties<'static> {
        ReceivedProperties {
            method: Some("echo"),
            correlation_id: Some("1"),
            reply_to: Some("rpc-reply.c.1"),
            content_type: Some(CONTENT_TYPE),
            content_encoding: None,
            user_id: None,
        }
    }

    fn replying_to(reply_to: &str) -> ReceivedProperties<'_> {
        ReceivedProperties {
            reply_to: Some(reply_to),
            ..request()
        }
    }

    fn kind(admission: Admission<'_>) -> FaultKind {
        match admission {
            Admission::Fault(fault) => fault.kind().clone(),
            other => panic!("expected a fault, got {other:?}"),
        }
    }

    #[test]
    fn a_well_formed_request_runs() {
        assert!(matches!(
            rules().admit(request(), 10),
            Admission::Run { method: "echo" }
        ));
        let one_way = ReceivedProperties {
            method: Some("echo"),
            ..ReceivedProperties::default()
        };
        assert!(matches!(rules().admit(one_way, 1), Admission::Run { .. }));
    }

    #[test]
    fn foreign_reply_addresses_are_refused_without_a_reply() {
        let hostile = replying_to("billing_requests");
        assert!(matches!(
            rules().admit(hostile, 1),
            Admission::Refuse {
                reply_to: "billing_requests"
            }
        ));
        let direct = replying_to("amq.rabbitmq.reply-to.g1h2AA==");
        assert!(matches!(rules().admit(direct, 1), Admission::Run { .. }));
        let server_named = replying_to("amq.gen-JzTY20BRgKO-HjmUJj0wLg");
        assert!(matches!(
            rules().admit(server_named, 1),
            Admission::Run { .. }
        ));
        // Other `amq.` names are the broker's own, never a client's reply queue.
        let broker_owned = replying_to("amq.direct");
        assert!(matches!(
            rules().admit(broker_owned, 1),
            Admission::Refuse { .. }
        ));
    }

    #[test]
    fn odd_properties_and_sizes_are_faults() {
        let no_id = ReceivedProperties {
            correlation_id: None,
            ..request()
        };
        assert_eq!(kind(rules().admit(no_id, 1)), FaultKind::BadRequest);
        let json = ReceivedProperties {
            content_type: Some("application/json"),
            ..request()
        };
        assert_eq!(
            kind(rules().admit(json, 1)),
            FaultKind::UnsupportedContentType
        );
        let gzip = ReceivedProperties {
            content_encoding: Some("gzip"),
            ..request()
        };
        assert_eq!(
            kind(rules().admit(gzip, 1)),
            FaultKind::UnsupportedContentType
        );
        assert_eq!(
            kind(rules().admit(request(), 11)),
            FaultKind::RequestTooLarge
        );
        let untyped = ReceivedProperties {
            method: None,
            ..request()
        };
        assert_eq!(kind(rules().admit(untyped, 1)), FaultKind::UnknownMethod);
    }
}
