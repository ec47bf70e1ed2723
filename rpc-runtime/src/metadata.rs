//! Call metadata: the headers a caller attaches to a call (an auth token, a
//! tenant, a request id) and a handler reads, as gRPC's metadata.

use crate::protocol::headers::check_name;
use std::fmt;

/// Headers attached to a call: name and value strings, in the order they
/// were inserted, each name once.
///
/// Names are ASCII, at most 255 bytes, matched exactly; `traceparent`,
/// `tracestate` and names starting with `rpc-` or `x-` are the protocol's
/// and the broker's own, and refused.
///
/// ```
/// use rpc_runtime::Metadata;
/// let mut metadata = Metadata::new();
/// metadata.insert("tenant", "acme")?;
/// metadata.insert("authorization", "Bearer abc")?;
/// assert_eq!(metadata.get("tenant"), Some("acme"));
/// assert!(metadata.insert("rpc-deadline", "0").is_err());
/// # Ok::<(), rpc_runtime::InvalidHeader>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    entries: Vec<(String, String)>,
}

/// A header name that cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidHeader {
    /// The name is empty, too long, or not printable ASCII.
    // Quoted and escaped: the name may hold control characters.
    #[error(
        "{0:?} is not a valid header name: use 1 to 255 printable ASCII characters without \
         spaces"
    )]
    Name(String),
    /// The name belongs to the protocol or the broker.
    #[error(
        "`{0}` is reserved: `traceparent`, `tracestate` and names starting with `rpc-` or `x-` \
         belong to the protocol and the broker"
    )]
    Reserved(String),
    /// The request's headers would not fit in one AMQP frame, which the
    /// broker would answer by closing the connection (and every call on it).
    #[error(
        "the request's properties and headers take {size} bytes, more than the {limit} its \
         connection carries in one frame (the broker's `frame_max`): keep metadata small, and \
         send data as the method's arguments"
    )]
    TooLarge {
        /// The encoded size of the request's properties and headers.
        size: usize,
        /// What one frame carries for them.
        limit: usize,
    },
}

impl Metadata {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets header `name` to `value`, replacing its earlier value.
    pub fn insert(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), InvalidHeader> {
        let (name, value) = (name.into(), value.into());
        check_name(&name)?;
        match self.entries.iter_mut().find(|(known, _)| *known == name) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((name, value)),
        }
        Ok(())
    }

    /// The value of header `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }

    /// Removes header `name`; returns its value, if it was set.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.entries.iter().position(|(known, _)| known == name)?;
        Some(self.entries.remove(at).1)
    }

    /// The headers, in the order they were inserted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds every header of `other` that this one lacks.
    pub(crate) fn fill_from(&mut self, other: &Metadata) {
        for (name, value) in &other.entries {
            if self.get(name).is_none() {
                self.entries.push((name.clone(), value.clone()));
            }
        }
    }

    /// A header as received, not checked (a server reads what came).
    pub(crate) fn push_received(&mut self, name: String, value: String) {
        self.entries.push((name, value));
    }
}

impl fmt::Debug for Metadata {
    /// Names only: values may be credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.entries.iter().map(|(name, _)| name))
            .finish()
    }
}
