use rpc_runtime::rpc_service;

#[rpc_service]
pub struct Fibonacci {
    cache: Vec<u64>,
}

fn main() {}
