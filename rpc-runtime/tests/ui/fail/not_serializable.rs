use rpc_runtime::rpc_service;

pub struct Opaque;

/// Serializes, but does not deserialize: the client could not decode it.
#[derive(serde::Serialize)]
pub struct WriteOnly;

#[rpc_service]
pub trait Vault {
    async fn store(&self, secret: Opaque) -> bool;
    async fn fetch(&self, id: u64) -> Opaque;
    async fn open(&self, id: u64) -> Result<Opaque, String>;
    async fn seal(&self, id: u64) -> Result<(), Opaque>;
    async fn audit(&self) -> WriteOnly;
}

fn main() {}
