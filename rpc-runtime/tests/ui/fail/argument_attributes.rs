use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Sensors {
    async fn read(&self, id: u32, #[cfg(any())] unit: String) -> f64;
    async fn reset(&self, #[allow(unused)] id: u32);
}

fn main() {}
