//! A deprecated trait is served, forwarded and given a client without a
//! warning of the macro's making: a crate that denies warnings still builds.
#![deny(warnings)]

use rpc_runtime::rpc_service;

#[deprecated(note = "use V2")]
#[rpc_service]
pub trait Old {
    async fn get(&self) -> u32;
}

struct Legacy;

#[allow(deprecated)]
impl Old for Legacy {
    async fn get(&self) -> u32 {
        1
    }
}

#[allow(deprecated)]
fn main() {
    let _ = OldServer::new(Legacy);
    let _ = OldClient::new;
}
