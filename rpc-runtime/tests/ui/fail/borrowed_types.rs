use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Text {
    async fn shout(&self, text: &str) -> String;
    async fn first(&self, words: Vec<String>) -> &'static str;
    async fn any(&self, value: impl serde::Serialize) -> u32;
}

fn main() {}
