//! Reply addresses (PROTOCOL.md §4): how clients name their reply queues,
//! and which addresses servers publish replies to.

/// The pseudo-queue of RabbitMQ's direct reply-to.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Prefix of the exclusive reply queues that clients of this framework declare.
///
/// Servers reply by default only to these queues, to server-named queues and
/// to direct reply-to addresses, so that a request cannot make a server
/// publish into an arbitrary application queue.
pub(crate) const REPLY_QUEUE_PREFIX: &str = "rpc-reply.";

/// Prefix of the names the broker gives to server-named queues
/// (`queue.declare` with an empty name), as the RabbitMQ tutorial's clients
/// declare their reply queues.
///
/// The broker refuses client-chosen queue names that start with `amq.`, so a
/// queue named `amq.gen-*` was always named by the broker, for the connection
/// that declared it: servers may reply to it without being turned against
/// another application's queue.
pub(crate) const SERVER_NAMED_QUEUE_PREFIX: &str = "amq.gen-";

/// The exclusive reply queue of a client's session:
/// `rpc-reply.<client id>.<session>`. A new name per session: the queue of a
/// connection that the broker has not yet noticed is dead may still exist,
/// and the broker would refuse its name to the new one.
pub(crate) fn reply_queue_name(client_id: &str, session: u64) -> String {
    format!("{REPLY_QUEUE_PREFIX}{client_id}.{session}")
}

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
    /// Whether direct reply-to addresses may be allowed at all.
    direct_reply_to: bool,
}

impl Default for ReplyToPolicy {
    fn default() -> Self {
        Self {
            prefixes: Some(vec![
                format!("{DIRECT_REPLY_TO}."),
                SERVER_NAMED_QUEUE_PREFIX.to_owned(),
                REPLY_QUEUE_PREFIX.to_owned(),
            ]),
            direct_reply_to: true,
        }
    }
}

impl ReplyToPolicy {
    /// Replies to any address: only for virtual hosts where every client is
    /// trusted.
    pub fn any() -> Self {
        Self {
            prefixes: None,
            direct_reply_to: true,
        }
    }

    /// Also replies to queues whose names start with `prefix` (for clients
    /// that name their reply queues their own way).
    pub fn allow_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some(prefixes) = &mut self.prefixes {
            prefixes.push(prefix.into());
        }
        self
    }

    /// No longer replies to direct reply-to addresses
    /// (`amq.rabbitmq.reply-to.*`): for queues that callers who are not
    /// trusted may publish to. RabbitMQ decodes such an address only when
    /// the reply is published, and a forged one makes it close the server's
    /// connection (PROTOCOL.md §4); a server replies to a request once only,
    /// but each forged request still costs it its connection once. Callers
    /// that use direct reply-to are then refused (their calls time out).
    ///
    /// ```
    /// use rpc_runtime::ReplyToPolicy;
    /// let policy = ReplyToPolicy::default().without_direct_reply_to();
    /// assert!(!policy.allows("amq.rabbitmq.reply-to.g1hkABFy"));
    /// assert!(policy.allows("rpc-reply.4f1c.1"));
    /// assert!(policy.allows("amq.gen-JzTY20BRgKO-HjmUJj0wLg"));
    /// let trusting = ReplyToPolicy::any().without_direct_reply_to();
    /// assert!(!trusting.allows("amq.rabbitmq.reply-to.g1hkABFy"));
    /// assert!(trusting.allows("billing_requests"));
    /// ```
    pub fn without_direct_reply_to(mut self) -> Self {
        self.direct_reply_to = false;
        self
    }

    /// Whether a reply may be published to `reply_to`.
    pub fn allows(&self, reply_to: &str) -> bool {
        if !self.direct_reply_to && reply_to.starts_with(DIRECT_REPLY_TO) {
            return false;
        }
        match &self.prefixes {
            None => true,
            Some(prefixes) => prefixes
                .iter()
                .any(|prefix| reply_to.starts_with(prefix.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_queues_are_named_per_client_and_session() {
        let name = reply_queue_name("4f1c", 2);
        assert_eq!(name, "rpc-reply.4f1c.2");
        assert!(ReplyToPolicy::default().allows(&name));
    }

    #[test]
    fn only_reply_addresses_are_allowed_by_default() {
        let policy = ReplyToPolicy::default();
        for allowed in [
            "rpc-reply.c.1",
            "amq.rabbitmq.reply-to.g1h2AA==",
            "amq.gen-JzTY20BRgKO-HjmUJj0wLg",
        ] {
            assert!(policy.allows(allowed), "{allowed}");
        }
        // Other `amq.` names are the broker's own, never a client's reply
        // queue; ordinary names may be another application's queue.
        for refused in [
            "amq.direct",
            "amq.rabbitmq.reply-to",
            "billing_requests",
            "",
        ] {
            assert!(!policy.allows(refused), "{refused}");
        }
    }
}
