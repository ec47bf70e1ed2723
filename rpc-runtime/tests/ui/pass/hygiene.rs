//! Generated code must compile whatever the user's scope holds: no prelude,
//! and user items that shadow the names it could have used.
#![no_implicit_prelude]

mod shadows {
    #![allow(dead_code)]
    pub struct Result;
    pub struct Option;
    pub struct Box;
    pub struct Vec;
    pub struct String;
    pub struct Arc;
    pub struct Send;
    pub struct Sync;
    pub struct Future;
    pub struct Client;
    pub struct Call;
    pub struct Fault;
    pub mod rpc_runtime {}
    pub mod core {}

    /// A blanket extension trait, with methods named as the generated
    /// code's helpers: in scope, it must not be called instead of them.
    pub trait Everything {
        fn arg(&self) {}
        fn finish(&self) {}
        fn method(&self) {}
        fn returns(&self) {}
        fn error(&self) {}
        fn trace(&self) {}
    }
    impl<T: ?::core::marker::Sized> Everything for T {}
}

mod service {
    #![no_implicit_prelude]
    #![allow(dead_code)]
    #[allow(unused_imports)]
    use super::shadows::*;

    #[derive(::serde::Serialize, ::serde::Deserialize, ::core::fmt::Debug)]
    pub struct Item {
        pub name: ::std::string::String,
    }

    #[::rpc_runtime::rpc_service(queue = "hygiene")]
    pub trait Catalog {
        /// A method with every kind of signature.
        async fn lookup(&self, id: u64, item: Item) -> ::core::result::Result<Item, ::std::string::String>;
        async fn count(&self) -> u64;
        async fn clear(&self);
        async fn r#type(&self, r#match: u8) -> u8;
        // Named as the client's `AsRef` method: the service's wins.
        async fn as_ref(&self) -> u8;
    }

    pub struct Shelf;

    impl Catalog for Shelf {
        async fn lookup(&self, _id: u64, item: Item) -> ::core::result::Result<Item, ::std::string::String> {
            ::core::result::Result::Ok(item)
        }
        async fn count(&self) -> u64 {
            0
        }
        async fn clear(&self) {}
        async fn r#type(&self, r#match: u8) -> u8 {
            r#match
        }
        async fn as_ref(&self) -> u8 {
            0
        }
    }

    fn assert_service<S: ::rpc_runtime::Service>() {}

    pub fn uses(client: ::rpc_runtime::Client) {
        assert_service::<CatalogServer<Shelf>>();
        assert_service::<CatalogServer<::std::sync::Arc<Shelf>>>();
        assert_service::<CatalogServer<::std::boxed::Box<Shelf>>>();
        let catalog = CatalogClient::new(client).with_queue("elsewhere");
        let _call: ::rpc_runtime::Call<::rpc_runtime::Fallible<Item, ::std::string::String>> =
            catalog.lookup(1, Item { name: ::std::string::String::new() });
        let _count: ::rpc_runtime::Call<::rpc_runtime::Plain<u64>> = catalog.count();
        let _clear: ::rpc_runtime::Call<::rpc_runtime::Plain<()>> = catalog.clear();
        let _type = catalog.r#type(1);
        let _as_ref: ::rpc_runtime::Call<::rpc_runtime::Plain<u8>> = catalog.as_ref();
        let _client: &::rpc_runtime::Client =
            ::core::convert::AsRef::<::rpc_runtime::Client>::as_ref(&catalog);
    }
}

fn main() {
    let _ = service::uses;
}
