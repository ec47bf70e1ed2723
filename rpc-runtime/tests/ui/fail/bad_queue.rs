use rpc_runtime::rpc_service;

#[rpc_service(queue = "amq.jobs")]
pub trait Jobs {
    async fn run(&self, id: u64) -> bool;
}

#[rpc_service(queue = "")]
pub trait Tasks {
    async fn run(&self, id: u64) -> bool;
}

fn main() {}
