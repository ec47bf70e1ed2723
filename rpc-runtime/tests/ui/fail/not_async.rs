use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Clock {
    fn now(&self) -> u64;
}

fn main() {}
