use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Store {
    async fn put<T: serde::Serialize>(&self, value: T) -> bool;
    async fn find<'a>(&self, key: &'a str) -> bool;
    async fn tag<'a, const N: usize>(&self, tags: std::borrow::Cow<'a, str>) -> bool;
}

fn main() {}
