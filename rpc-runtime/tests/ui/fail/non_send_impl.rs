use rpc_runtime::rpc_service;
use std::rc::Rc;

#[rpc_service]
pub trait Counter {
    async fn next(&self) -> u64;
}

struct Local;

impl Counter for Local {
    async fn next(&self) -> u64 {
        let shared = Rc::new(1u64);
        tokio::task::yield_now().await;
        *shared
    }
}

fn main() {}
