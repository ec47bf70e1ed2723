use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Geometry {
    async fn area(&self, (width, height): (u32, u32)) -> u64;
    async fn scale(&self, _: u32) -> u64;
}

fn main() {}
