//! A method returning a future rather than `async fn` is told so, and only
//! so: its return type is the future's, not a value sent.
use rpc_runtime::rpc_service;
use std::future::Future;

#[rpc_service]
pub trait Clock {
    fn now(&self) -> impl Future<Output = u64> + Send;
}

fn main() {}
