//! A service declared by another macro, with its types passed as raw token
//! trees or as `ty` fragments (which reach the attribute in invisible
//! groups), and a trait whose name is a single capital letter.

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

macro_rules! typed {
    ($name:ident, $ret:ty) => {
        #[rpc_runtime::rpc_service]
        pub trait $name {
            async fn run(&self) -> $ret;
        }
    };
}

// Still a fallible method, seen through the group.
typed!(Typed, Result<u32, String>);

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

impl Typed for Impl {
    async fn run(&self) -> Result<u32, String> {
        Ok(1)
    }
}

fn assert_service<T: rpc_runtime::Service>() {}

fn main() {
    assert_service::<GeneratedServer<Impl>>();
    assert_service::<SServer<Impl>>();
    assert_service::<TypedServer<Impl>>();
    let _: fn(&TypedClient) -> rpc_runtime::Call<rpc_runtime::Fallible<u32, String>> =
        TypedClient::run;
}
