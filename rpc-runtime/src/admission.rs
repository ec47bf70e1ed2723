//! What a request must look like before a server runs its method.
//!
//! A request is checked in this order; the first rule it breaks decides its
//! fate, and its method does not run:
//!
//! 1. its `reply_to`, if any, must be an address the server may publish to
//!    ([`ReplyToPolicy`]); otherwise it gets **no reply** (replying would be
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
    error::{Fault, FaultKind},
    protocol::{CONTENT_TYPE, DIRECT_REPLY_TO, REPLY_QUEUE_PREFIX, SERVER_NAMED_QUEUE_PREFIX},
};
use lapin::BasicProperties;

/// The default maximum size of a request body: 4 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 4 << 20;

/// `content_type`s accepted as MessagePack.
const MSGPACK_CONTENT_TYPES: &[&str] = &[CONTENT_TYPE, "application/x-msgpack"];

/// Which `reply_to` addresses a server publishes replies to.
///
/// A server publishes each reply to the default exchange with the request's
/// `reply_to` as routing key, so without a policy any client could make it
/// publish into any queue of the virtual host, such as another service's
/// request queue (requests it never meant to send, under the server's
/// identity). By default a server replies only to:
///
/// - RabbitMQ's direct reply-to addresses (`amq.rabbitmq.reply-to.*`);
/// - server-named queues (`amq.gen-*`), which the clients of the RabbitMQ
///   tutorial declare (`queue_declare("", exclusive=True)`): the broker
///   refuses client-chosen names starting with `amq.`, so such a queue was
///   always named by the broker for the client that declared it;
/// - queues named like the reply queues of this framework's clients
///   (`rpc-reply.*`).
///
/// Requests asking for any other address are rejected without running and
/// without a reply.
///
/// ```
/// use rpc_runtime::ReplyToPolicy;
/// let policy = ReplyToPolicy::default().allow_prefix("legacy-replies.");
/// assert!(policy.allows("rpc-reply.4f1c.1"));
/// assert!(policy.allows("amq.rabbitmq.reply-to.g1hkABFy"));
/// assert!(policy.allows("amq.gen-JzTY20BRgKO-HjmUJj0wLg"));
/// assert!(policy.allows("legacy-replies.client-7"));
/// assert!(!policy.allows("billing_requests"));
/// assert!(ReplyToPolicy::any().allows("billing_requests"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyToPolicy {
    /// `None` allows every address.
    prefixes: Option<Vec<String>>,
}

impl Default for ReplyToPolicy {
    fn default() -> Self {
        Self {
            prefixes: Some(vec![
                format!("{DIRECT_REPLY_TO}."),
                SERVER_NAMED_QUEUE_PREFIX.to_owned(),
                REPLY_QUEUE_PREFIX.to_owned(),
            ]),
        }
    }
}

impl ReplyToPolicy {
    /// Replies to any address: only for virtual hosts where every client is
    /// trusted.
    pub fn any() -> Self {
        Self { prefixes: None }
    }

    /// Also replies to queues whose names start with `prefix` (for clients
    /// that name their reply queues their own way).
    pub fn allow_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some(prefixes) = &mut self.prefixes {
            prefixes.push(prefix.into());
        }
        self
    }

    /// Whether a reply may be published to `reply_to`.
    pub fn allows(&self, reply_to: &str) -> bool {
        match &self.prefixes {
            None => true,
            Some(prefixes) => prefixes
                .iter()
                .any(|prefix| reply_to.starts_with(prefix.as_str())),
        }
    }
}

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
        properties: &'a BasicProperties,
        body_len: usize,
    ) -> Admission<'a> {
        let reply_to = properties
            .reply_to()
            .as_ref()
            .map(|reply_to| reply_to.as_str());
        if let Some(reply_to) = reply_to {
            if !self.reply_to.allows(reply_to) {
                return Admission::Refuse { reply_to };
            }
            if properties.correlation_id().is_none() {
                return fault(
                    FaultKind::BadRequest,
                    "a request with a `reply_to` needs a `correlation_id`".to_owned(),
                );
            }
        }
        if let Some(content_type) = properties.content_type()
            && !MSGPACK_CONTENT_TYPES.contains(&content_type.as_str())
        {
            return fault(
                FaultKind::UnsupportedContentType,
                format!("content_type `{content_type}` is not supported: send `{CONTENT_TYPE}`"),
            );
        }
        if let Some(encoding) = properties.content_encoding() {
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
        match properties.kind() {
            Some(method) => Admission::Run {
                method: method.as_str(),
            },
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

    fn request() -> BasicProperties {
        BasicProperties::default()
            .with_type("echo".into())
            .with_correlation_id("1".into())
            .with_reply_to("rpc-reply.c.1".into())
            .with_content_type(CONTENT_TYPE.into())
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
            rules().admit(&request(), 10),
            Admission::Run { method: "echo" }
        ));
        let one_way = BasicProperties::default().with_type("echo".into());
        assert!(matches!(rules().admit(&one_way, 1), Admission::Run { .. }));
    }

    #[test]
    fn foreign_reply_addresses_are_refused_without_a_reply() {
        let hostile = request().with_reply_to("billing_requests".into());
        assert!(matches!(
            rules().admit(&hostile, 1),
            Admission::Refuse {
                reply_to: "billing_requests"
            }
        ));
        let direct = request().with_reply_to("amq.rabbitmq.reply-to.g1h2AA==".into());
        assert!(matches!(rules().admit(&direct, 1), Admission::Run { .. }));
        let server_named = request().with_reply_to("amq.gen-JzTY20BRgKO-HjmUJj0wLg".into());
        assert!(matches!(
            rules().admit(&server_named, 1),
            Admission::Run { .. }
        ));
        // Other `amq.` names are the broker's own, never a client's reply queue.
        let broker_owned = request().with_reply_to("amq.direct".into());
        assert!(matches!(
            rules().admit(&broker_owned, 1),
            Admission::Refuse { .. }
        ));
    }

    #[test]
    fn odd_properties_and_sizes_are_faults() {
        let no_id = BasicProperties::default()
            .with_type("echo".into())
            .with_reply_to("rpc-reply.c.1".into());
        assert_eq!(kind(rules().admit(&no_id, 1)), FaultKind::BadRequest);
        let json = request().with_content_type("application/json".into());
        assert_eq!(
            kind(rules().admit(&json, 1)),
            FaultKind::UnsupportedContentType
        );
        let gzip = request().with_content_encoding("gzip".into());
        assert_eq!(
            kind(rules().admit(&gzip, 1)),
            FaultKind::UnsupportedContentType
        );
        assert_eq!(
            kind(rules().admit(&request(), 11)),
            FaultKind::RequestTooLarge
        );
        let untyped = BasicProperties::default()
            .with_correlation_id("1".into())
            .with_reply_to("rpc-reply.c.1".into());
        assert_eq!(kind(rules().admit(&untyped, 1)), FaultKind::UnknownMethod);
    }
}
