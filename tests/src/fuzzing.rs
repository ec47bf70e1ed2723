//! The bodies of the fuzz targets (`fuzz/fuzz_targets`), shared with the
//! regression test that replays every input the fuzzers ever crashed on
//! (`tests/tests/fuzz_regressions.rs`).
//!
//! - [`server_dispatch`]: arbitrary bytes as the body of a request to any
//!   method (or none) of a service with arguments of every shape. Decoding
//!   must end in a reply or a fault, never a panic, and every reply the
//!   server encodes must decode on the client side.
//! - [`client_decode`]: arbitrary bytes as a reply body, decoded as every kind
//!   of reply a client can expect. Decoding must end in a value or an error,
//!   never a panic.

use futures_util::FutureExt;
use rpc_runtime::{Fallible, Plain, Returns, Service, rpc_service};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A recursive value, like a JSON document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Tree {
    Leaf(i32),
    Text(String),
    Branch(Vec<Tree>),
    Pair { left: Box<Tree>, right: Box<Tree> },
    Nothing,
}

impl Tree {
    fn size(&self) -> u32 {
        match self {
            Tree::Leaf(_) | Tree::Text(_) | Tree::Nothing => 1,
            Tree::Branch(children) => children
                .iter()
                .fold(1u32, |total, child| total.wrapping_add(child.size())),
            Tree::Pair { left, right } => 1u32.wrapping_add(left.size()).wrapping_add(right.size()),
        }
    }
}

/// A record with optional and defaulted fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    pub score: Option<f32>,
    #[serde(default)]
    pub flags: BTreeMap<String, bool>,
}

/// An application error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Oops {
    Empty,
    TooMany { count: usize },
}

/// A service whose methods take every shape of argument.
#[rpc_service]
pub trait Fuzzed {
    async fn unit(&self);
    async fn scalars(&self, a: u8, b: i64, c: f64, d: bool, e: char) -> u64;
    async fn text(&self, s: String, v: Vec<String>, o: Option<String>) -> String;
    async fn nested(&self, tree: Tree) -> u32;
    async fn records(
        &self,
        record: Record,
        extra: BTreeMap<String, Vec<u16>>,
    ) -> Result<Record, Oops>;
    async fn bytes(&self, data: Vec<u8>, tuple: (u8, String, [u32; 3])) -> usize;
}

/// An implementation that accepts any value without panicking.
#[derive(Debug, Clone, Copy)]
pub struct Accepting;

impl Fuzzed for Accepting {
    async fn unit(&self) {}

    async fn scalars(&self, a: u8, b: i64, c: f64, d: bool, e: char) -> u64 {
        u64::from(a)
            .wrapping_add(b as u64)
            .wrapping_add(c.to_bits())
            .wrapping_add(u64::from(d))
            .wrapping_add(u64::from(e))
    }

    async fn text(&self, s: String, v: Vec<String>, o: Option<String>) -> String {
        let mut all = s;
        for item in v.iter().take(4) {
            all.push_str(item);
        }
        all.push_str(o.as_deref().unwrap_or(""));
        all
    }

    async fn nested(&self, tree: Tree) -> u32 {
        tree.size()
    }

    async fn records(
        &self,
        mut record: Record,
        extra: BTreeMap<String, Vec<u16>>,
    ) -> Result<Record, Oops> {
        if record.tags.is_empty() && extra.is_empty() {
            return Err(Oops::Empty);
        }
        if record.tags.len() > 100 {
            return Err(Oops::TooMany {
                count: record.tags.len(),
            });
        }
        record.tags.extend(extra.into_keys().take(4));
        Ok(record)
    }

    async fn bytes(&self, data: Vec<u8>, tuple: (u8, String, [u32; 3])) -> usize {
        data.len()
            .wrapping_add(tuple.1.len())
            .wrapping_add(usize::from(tuple.0))
    }
}

/// The methods a fuzz input can pick, by its first byte; the last is not a
/// method of the service.
const METHODS: &[&str] = &[
    "unit", "scalars", "text", "nested", "records", "bytes", "nope",
];

/// Decodes and dispatches `data[1..]` as a request to the method `data[0]`
/// picks. Panics only if the framework misbehaves.
pub fn server_dispatch(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(selector) % METHODS.len()];
    let server = FuzzedServer::new(Accepting);
    let outcome = server
        .dispatch(method, body)
        .now_or_never()
        .expect("the methods never wait");
    // A reply the server encodes must decode as what the client expects.
    if let Ok(reply) = outcome {
        let reply = reply.as_bytes();
        let decoded = match method {
            "unit" => Plain::<()>::decode(method, reply).map(drop),
            "scalars" => Plain::<u64>::decode(method, reply).map(drop),
            "text" => Plain::<String>::decode(method, reply).map(drop),
            "nested" => Plain::<u32>::decode(method, reply).map(drop),
            "records" => match Fallible::<Record, Oops>::decode(method, reply) {
                Ok(_) | Err(rpc_runtime::CallError::App(_)) => Ok(()),
                Err(rpc_runtime::CallError::Rpc(error)) => Err(error),
            },
            "bytes" => Plain::<usize>::decode(method, reply).map(drop),
            other => panic!("`{other}` is no method, yet it replied"),
        };
        if let Err(error) = decoded {
            panic!("the reply of `{method}` does not decode: {error}");
        }
    }
}

/// Decodes `data` as every kind of reply a client can expect.
pub fn client_decode(data: &[u8]) {
    let _ = Plain::<()>::decode("m", data);
    let _ = Plain::<u64>::decode("m", data);
    let _ = Plain::<String>::decode("m", data);
    let _ = Plain::<Tree>::decode("m", data);
    let _ = Plain::<(u8, String, [u32; 3])>::decode("m", data);
    let _ = Fallible::<Record, Oops>::decode("m", data);
    let _ = Fallible::<Vec<Tree>, String>::decode("m", data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_requests_run() {
        let mut args = rpc_runtime::__private::ArgsEncoder::new(1);
        args.arg(
            "tree",
            &Tree::Branch(vec![Tree::Leaf(1), Tree::Text("x".into())]),
        );
        let mut input = vec![3];
        input.extend(args.finish().expect("encode"));
        server_dispatch(&input);
        client_decode(&input);
    }
}
