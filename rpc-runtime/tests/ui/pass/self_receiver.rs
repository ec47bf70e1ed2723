//! `self: &Self` is `&self` spelled out.
use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Clock {
    async fn now(self: &Self) -> u64;
}

struct Wall;

impl Clock for Wall {
    async fn now(self: &Self) -> u64 {
        0
    }
}

fn main() {
    let _ = ClockServer::new(Wall);
}
