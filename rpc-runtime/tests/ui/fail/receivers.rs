use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Counter {
    async fn take(self) -> u64;
    async fn bump(&mut self) -> u64;
    async fn boxed(self: Box<Self>) -> u64;
    async fn associated() -> u64;
}

fn main() {}
