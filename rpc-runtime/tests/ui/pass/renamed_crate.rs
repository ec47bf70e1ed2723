//! `crate = ".."` names `rpc-runtime` for a crate that depends on it under
//! another name (`rpc = { package = "rpc-runtime", .. }`), simulated here by
//! an alias; `crate = path` without quotes too.
#![deny(warnings)]

extern crate rpc_runtime as rpc;

#[rpc::rpc_service(crate = "rpc")]
pub trait Quoted {
    async fn get(&self, id: u64) -> Result<String, String>;
}

#[rpc::rpc_service(queue = "bare", crate = ::rpc)]
pub trait Bare {
    async fn get(&self, id: u64) -> String;
}

struct Both;

impl Quoted for Both {
    async fn get(&self, id: u64) -> Result<String, String> {
        Ok(id.to_string())
    }
}

impl Bare for Both {
    async fn get(&self, id: u64) -> String {
        id.to_string()
    }
}

fn assert_service<S: rpc::Service>() {}

fn main() {
    assert_service::<QuotedServer<Both>>();
    assert_service::<BareServer<std::sync::Arc<Both>>>();
    let _ = QuotedClient::new;
    let _ = BareClient::new;
}
