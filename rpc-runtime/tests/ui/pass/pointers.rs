//! `Arc<S>` and `Box<S>` serve where `S` does: the macro implements the trait
//! for both, forwarding each method (`#[cfg]`-ed out methods included).

use rpc_runtime::{Service, rpc_service};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::sync::Arc;

#[rpc_service]
pub trait Counter {
    async fn add(&self, n: u32) -> u32;
    async fn check(&self, n: u32) -> Result<u32, String>;
    #[cfg(any())]
    async fn absent(&self, missing: Missing) -> Missing;
    #[cfg(all())]
    async fn present(&self) -> u32;
}

// A trait named like the generic parameter one might have used.
#[rpc_service]
pub trait T {
    async fn get(&self) -> u8;
}

struct Shared {
    base: u32,
}

impl Counter for Shared {
    async fn add(&self, n: u32) -> u32 {
        self.base + n
    }
    async fn check(&self, n: u32) -> Result<u32, String> {
        if n > self.base {
            Err(format!("{n} is too large"))
        } else {
            Ok(n)
        }
    }
    async fn present(&self) -> u32 {
        self.base
    }
}

impl T for Shared {
    async fn get(&self) -> u8 {
        7
    }
}

/// Dispatches `method` with `args` and decodes the one-key reply.
async fn call<S: Service, V: DeserializeOwned>(
    server: &S,
    method: &str,
    args: &[u32],
) -> BTreeMap<String, V> {
    let body = rmp_serde::to_vec(args).expect("arguments");
    let reply = server.dispatch(method, &body).await.expect("no fault");
    rmp_serde::from_slice(reply.as_bytes()).expect("a reply map")
}

fn reply<V>(key: &str, value: V) -> BTreeMap<String, V> {
    BTreeMap::from([(key.to_owned(), value)])
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let shared = Arc::new(Shared { base: 40 });
        let by_arc = CounterServer::new(Arc::clone(&shared));
        assert_eq!(call(&by_arc, "add", &[2]).await, reply("ok", 42));
        assert_eq!(
            call(&by_arc, "check", &[41]).await,
            reply("err", "41 is too large".to_owned())
        );
        assert_eq!(call(&by_arc, "present", &[]).await, reply("ok", 40));
        assert!(Arc::ptr_eq(by_arc.get_ref(), &shared));

        let by_box = CounterServer::new(Box::new(Shared { base: 1 }));
        assert_eq!(call(&by_box, "add", &[2]).await, reply("ok", 3));
        assert_eq!(call(&by_box, "check", &[1]).await, reply("ok", 1));
        assert_eq!(by_box.into_inner().base, 1);

        // Pointers to pointers, and a trait named `T`.
        let nested = TServer::new(Arc::new(Box::new(Shared { base: 0 })));
        assert_eq!(call(&nested, "get", &[]).await, reply("ok", 7u8));
    });
}
