use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Store {
    async fn put<T: serde::Serialize>(&self, value: T) -> bool;
}

fn main() {}
