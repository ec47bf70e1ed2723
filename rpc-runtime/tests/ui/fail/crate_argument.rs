use rpc_runtime::rpc_service;

#[rpc_service(crate = "")]
pub trait Empty {
    async fn get(&self) -> u32;
}

#[rpc_service(crate = "rpc<T>")]
pub trait Generic {
    async fn get(&self) -> u32;
}

#[rpc_service(crate = "rpc_runtime", crate = "rpc_runtime")]
pub trait Twice {
    async fn get(&self) -> u32;
}

fn main() {}
