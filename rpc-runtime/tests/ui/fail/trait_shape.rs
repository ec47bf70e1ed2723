use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Repository<'a, T>: Clone
where
    T: Clone,
{
    const LIMIT: usize;
    type Item;
    async fn get(&self, id: u64) -> u64;
    async fn count(&self) -> u64 {
        0
    }
}

fn main() {}
