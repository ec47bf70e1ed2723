//! A service declared by another macro, with its types passed as raw token
//! trees, and a trait whose name is a single capital letter.

macro_rules! service {
    ($name:ident, $($ty:tt)*) => {
        #[rpc_runtime::rpc_service]
        pub trait $name {
            async fn echo(&self, value: $($ty)*) -> $($ty)*;
        }
    };
}

service!(Generated, u32);
service!(S, String);

struct Impl;

impl Generated for Impl {
    async fn echo(&self, value: u32) -> u32 {
        value
    }
}

impl S for Impl {
    async fn echo(&self, value: String) -> String {
        value
    }
}

fn assert_service<T: rpc_runtime::Service>() {}

fn main() {
    assert_service::<GeneratedServer<Impl>>();
    assert_service::<SServer<Impl>>();
}
