use rpc_runtime::rpc_service;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct MyError;

type Result<T> = std::result::Result<T, MyError>;

mod outcome {
    pub type Result = std::result::Result<u32, super::MyError>;
}

#[rpc_service]
pub trait Ledger {
    // A local one-argument alias: its errors would travel as `{"ok": {"Err": ..}}`.
    async fn balance(&self) -> Result<u64>;
    // Aliases whose error types are not serializable at all.
    async fn read(&self) -> std::io::Result<Vec<u8>>;
    async fn parse(&self, text: String) -> anyhow::Result<u32>;
    // An alias fully applied.
    async fn count(&self) -> outcome::Result;
    // What to write instead.
    async fn credit(&self, cents: u64) -> std::result::Result<u64, MyError>;
}

fn main() {}
