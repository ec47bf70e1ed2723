use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Factory {
    async fn new(&self) -> u32;
    async fn with_queue(&self, name: String) -> u32;
    async fn __rpc_internal(&self) -> u32;
    async fn build(&self, __rpc_args: u32) -> u32;
    async fn r#new(&self, r#__rpc_raw: u32) -> u32;
    async fn clone(&self) -> u32;
}

fn main() {}
