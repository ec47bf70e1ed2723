use rpc_runtime::rpc_service;

pub struct Opaque;

#[rpc_service]
pub trait Vault {
    async fn store(&self, secret: Opaque) -> bool;
}

fn main() {}
