//! The requests a server answered at direct reply-to addresses, to know
//! them again if the broker redelivers them.
//!
//! A caller chooses its `reply_to`, and RabbitMQ does not check an
//! `amq.rabbitmq.reply-to.<token>` address when a request is published: it
//! decodes the token only when the server publishes the reply. A forged or
//! stale token (one naming a node that is not in the cluster, or not
//! decoding at all) crashes the server's channel, and RabbitMQ closes the
//! server's whole connection with `541 INTERNAL_ERROR` (seen with 3.10.8;
//! crashes of the same decoding are reported for other versions). The
//! request, not yet acknowledged, is redelivered; run and answered again,
//! it would close the connection again, for ever, and with it every request
//! and call on that connection.
//!
//! So a server remembers the last [`REMEMBERED`] requests it answered at a
//! direct reply-to address (by `reply_to`, `correlation_id`, method and
//! body: a caller may use a correlation id again for its next request),
//! from just before each reply, or fault, is published; the list stops
//! while the connection is down, so the reply that closed it is there when
//! the request comes back. The check comes before anything else is done
//! with a request, as a fault would be published to the address too.
//!
//! | a request redelivered to this server | what the server does |
//! |---|---|
//! | answered by it at a direct reply-to address (the same request: same address, correlation id, method and body) | rejects it without running it again (a dead-letter exchange gets it), logs a warning, counts it `refused` |
//! | anything else | runs it, as any request |
//!
//! The first case includes a request whose reply went out and whose
//! acknowledgement was lost with the connection: its caller has its reply,
//! and it does not run twice. One whose reply was lost too gets none: its
//! caller's call times out, as it would have had the server answered a dead
//! address. A forged request costs each server process the connection once.

use std::{
    collections::{HashSet, VecDeque},
    hash::{BuildHasher, RandomState},
    sync::Mutex,
};

use crate::protocol::{reply_address::DIRECT_REPLY_TO, request::ReceivedProperties};

/// How many answered requests a server remembers: more than a server
/// answers between a reply it publishes and the loss of its connection.
const REMEMBERED: usize = 4096;

/// The requests answered at direct reply-to addresses, newest last.
#[derive(Debug, Default)]
pub(crate) struct DirectReplies {
    /// Keyed hashes of a request's address, correlation id, method and
    /// body: a request cannot choose its way onto another's.
    hasher: RandomState,
    answered: Mutex<Answered>,
}

#[derive(Debug, Default)]
struct Answered {
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

/// A request with a direct reply-to address, as [`DirectReplies`] knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Answerable(u64);

impl DirectReplies {
    /// The request with these properties and `body`, if its reply goes to a
    /// direct reply-to address.
    pub(crate) fn key(&self, request: &ReceivedProperties<'_>, body: &[u8]) -> Option<Answerable> {
        let reply_to = request.reply_to?;
        let token = reply_to
            .strip_prefix(DIRECT_REPLY_TO)
            .filter(|token| token.starts_with('.'))?;
        Some(Answerable(self.hasher.hash_one((
            token,
            request.correlation_id,
            request.method,
            body,
        ))))
    }

    /// Notes that `request` is being answered.
    pub(crate) fn answering(&self, request: Answerable) {
        let key = request.0;
        let mut answered = self.lock();
        if answered.set.insert(key) {
            answered.order.push_back(key);
            if answered.order.len() > REMEMBERED
                && let Some(oldest) = answered.order.pop_front()
            {
                answered.set.remove(&oldest);
            }
        }
    }

    /// Whether `request` was answered by this server.
    pub(crate) fn answered(&self, request: Answerable) -> bool {
        self.lock().set.contains(&request.0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Answered> {
        self.answered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(
        replies: &DirectReplies,
        reply_to: &str,
        correlation_id: &str,
        body: &[u8],
    ) -> Option<Answerable> {
        let request = ReceivedProperties {
            reply_to: Some(reply_to),
            correlation_id: Some(correlation_id),
            method: Some("m"),
            ..ReceivedProperties::default()
        };
        replies.key(&request, body)
    }

    #[test]
    fn requests_answered_at_direct_reply_to_addresses_are_known_again() {
        let replies = DirectReplies::default();
        let address = "amq.rabbitmq.reply-to.g1hkAA.key";
        let direct = key(&replies, address, "c1", b"\x90").expect("direct");
        assert!(!replies.answered(direct));
        replies.answering(direct);
        assert!(replies.answered(direct));
        // Another call of the same caller, the same correlation id with
        // other arguments, and other kinds of address.
        let other = key(&replies, address, "c2", b"\x90").expect("direct");
        assert!(!replies.answered(other));
        let reused = key(&replies, address, "c1", b"\x91\x07").expect("direct");
        assert!(!replies.answered(reused));
        assert_eq!(key(&replies, "rpc-reply.4f1c.1", "c1", b"\x90"), None);
        assert_eq!(key(&replies, "amq.rabbitmq.reply-to", "c1", b"\x90"), None);
        // The oldest are forgotten.
        for n in 0..REMEMBERED {
            let correlation_id = n.to_string();
            let next = key(&replies, "amq.rabbitmq.reply-to.x.y", &correlation_id, b"");
            replies.answering(next.expect("direct"));
        }
        assert!(!replies.answered(direct));
        let newest = key(&replies, "amq.rabbitmq.reply-to.x.y", "4095", b"");
        assert!(replies.answered(newest.expect("direct")));
    }
}
