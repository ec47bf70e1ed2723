//! Services of any visibility, in nested modules.

mod inner {
    use rpc_runtime::rpc_service;

    #[rpc_service]
    pub(crate) trait Ping {
        async fn ping(&self) -> u8;
    }

    #[rpc_service]
    trait Local {
        async fn local(&self, n: u8) -> u8;
    }

    pub(crate) struct Pong;

    impl Ping for Pong {
        async fn ping(&self) -> u8 {
            1
        }
    }

    pub(crate) fn server() -> PingServer<Pong> {
        PingServer::new(Pong)
    }
}

fn main() {
    let _ = inner::server();
}
