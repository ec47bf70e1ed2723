//! References are refused wherever they are in a type, each on itself.
use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Text {
    async fn shout(&self, text: Option<&str>) -> String;
    async fn words(&self) -> Vec<&'static str>;
    async fn pair(&self, pair: (u32, &str), all: [&str; 2], some: Box<[&str]>) -> u32;
    async fn parse(&self, text: String) -> Result<u32, &'static str>;
}

fn main() {}
