//! The transport on lapin, the default: each module carries what its
//! namesake in [`transport`](super) lists, with lapin's types.
//!
//! Why lapin's own automatic recovery is not used is in
//! [`connection`](crate::connection).

pub(crate) mod client;
pub(crate) mod link;
pub(crate) mod probe;
pub(crate) mod properties;
pub(crate) mod publish;
pub(crate) mod server;

use super::AmqpError;
