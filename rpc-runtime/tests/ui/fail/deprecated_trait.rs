//! The client and server of a deprecated trait are deprecated too: their
//! users are told, as the trait's are.
#![deny(deprecated)]

use rpc_runtime::rpc_service;

#[deprecated(note = "use V2")]
#[rpc_service]
pub trait Old {
    async fn get(&self) -> u32;
}

fn main() {
    let _ = OldClient::new;
    let _ = OldServer::new(());
}
