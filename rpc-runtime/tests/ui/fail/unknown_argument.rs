use rpc_runtime::rpc_service;

#[rpc_service(queue = "jobs", durable = true)]
pub trait Jobs {
    async fn run(&self, id: u64) -> bool;
}

fn main() {}
