//! A deprecated method is served and forwarded without a warning of the
//! macro's making (a crate that denies warnings still builds), and its
//! client method is deprecated too.
#![deny(warnings)]

use rpc_runtime::rpc_service;

#[rpc_service]
pub trait Orders {
    #[deprecated(note = "use `place`")]
    async fn order(&self, item: String) -> u64;
    async fn place(&self, item: String) -> u64;
}

struct Shop;

#[allow(deprecated)]
impl Orders for Shop {
    async fn order(&self, item: String) -> u64 {
        self.place(item).await
    }
    async fn place(&self, item: String) -> u64 {
        item.len() as u64
    }
}

#[allow(deprecated)]
fn _calls_the_deprecated_method(client: &OrdersClient) {
    let _ = client.order("book".into());
}

fn main() {
    let _ = OrdersServer::new(Shop);
}
