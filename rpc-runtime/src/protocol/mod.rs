//! Wire protocol v1: everything another implementation must match, in one
//! place. `docs/PROTOCOL.md` describes the same rules for readers in other
//! languages, section by section:
//!
//! | PROTOCOL.md | here |
//! |---|---|
//! | §1 Request queue | [`is_queue_name`]; the default name (the trait's, in snake case) is the macro's |
//! | §2 Request: properties and `mandatory` | [`request`]: the properties a client sets and a server reads, the correlation id format, the expiration, the `mandatory` rule |
//! | §2 Request: headers | [`headers`]: trace context, the caller's deadline, call metadata |
//! | §2 Request: body | [`args`]: the MessagePack array of arguments |
//! | §3 Values | [`msgpack`]: the serializer's settings, bounded nesting |
//! | §4 Reply address | [`reply_address`]: reply queue names, direct reply-to, which addresses servers reply to |
//! | §5 Reply | [`reply`]: its properties, and its body, `{"ok"}`, `{"err"}` or `{"fault"}`; [`fault`]: the kinds of fault |
//! | §10 Describing a service | [`describe`]: the reserved method and the description it answers |
//!
//! §6 (server behaviour) and §7 (client behaviour) are what the server and
//! the client do with these: the acknowledgement policy is
//! `server::ack_policy`, what a request must look like to run
//! `server::admission`, reply matching `client::pending`.
//!
//! Nothing here speaks AMQP through a client library: the transport
//! carries what this module says, and reads what it defines.

pub(crate) mod args;
pub(crate) mod describe;
pub(crate) mod digits;
pub(crate) mod fault;
pub(crate) mod headers;
pub(crate) mod msgpack;
pub(crate) mod reply;
pub(crate) mod reply_address;
pub(crate) mod request;

/// The `content_type` of every request and reply.
pub(crate) const CONTENT_TYPE: &str = "application/msgpack";

/// The default maximum size of a request body: 4 MiB. Servers refuse
/// larger requests with a `request_too_large` fault, and clients do not
/// send them.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 4 << 20;

/// The longest AMQP short string: a queue's name, a method's (`type`), a
/// user's (`user_id`).
const MAX_SHORT_STRING: usize = 255;

/// Whether `text` fits a short string, as a method's name (the `type`
/// property) or a user's (`user_id`) must.
pub(crate) fn is_short_string(text: &str) -> bool {
    text.len() <= MAX_SHORT_STRING
}

/// Whether `name` can name a request queue: 1 to 255 bytes. An empty name
/// would have the broker make one up for a server, which no client could
/// address.
pub(crate) fn is_queue_name(name: &str) -> bool {
    !name.is_empty() && is_short_string(name)
}
