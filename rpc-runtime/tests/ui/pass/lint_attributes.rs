//! Lint attributes reach what is generated: a method's onto everything
//! generated for it, the trait's onto everything generated for the trait.
//! The method name is the wire's, so a service that answers peers in other
//! languages may name its methods in PascalCase.
#![deny(warnings)]

use rpc_runtime::rpc_service;

#[deprecated(note = "use `Id`")]
#[derive(serde::Serialize, serde::Deserialize)]
pub struct OldId(pub u64);

#[rpc_service]
pub trait Users {
    #[allow(non_snake_case)]
    async fn GetUser(&self, id: u64) -> String;
    // An expectation fulfilled by the trait method: the generated copies,
    // which may not trip the lint, must not warn of an unfulfilled one.
    #[expect(non_snake_case)]
    async fn ListUsers(&self) -> Vec<String>;
    #[cfg_attr(all(), allow(non_snake_case))]
    async fn DeleteUser(&self, id: u64);
    // The method's types are named by generated code too.
    #[allow(deprecated)]
    async fn by_old_id(&self, id: OldId) -> String;
    // Denials reach generated code, which must not trip them.
    #[deny(warnings)]
    async fn count(&self) -> u64;
}

#[allow(non_snake_case)]
#[rpc_service]
pub trait Accounts {
    async fn OpenAccount(&self, owner: String) -> u64;
}

struct Directory;

impl Users for Directory {
    async fn GetUser(&self, id: u64) -> String {
        id.to_string()
    }
    async fn ListUsers(&self) -> Vec<String> {
        Vec::new()
    }
    async fn DeleteUser(&self, _id: u64) {}
    #[allow(deprecated)]
    async fn by_old_id(&self, id: OldId) -> String {
        id.0.to_string()
    }
    async fn count(&self) -> u64 {
        0
    }
}

impl Accounts for Directory {
    async fn OpenAccount(&self, owner: String) -> u64 {
        owner.len() as u64
    }
}

// A `forbid` on the trait or a method reaches generated code as a `deny`:
// the allowances generated code needs (E0453 under a `forbid`) still hold.
#[forbid(deprecated, non_snake_case, unused_imports)]
#[rpc_service]
pub trait Strict {
    #[forbid(non_snake_case)]
    async fn strict(&self, x: u32) -> u32;
}

impl Strict for Directory {
    async fn strict(&self, x: u32) -> u32 {
        x
    }
}

#[allow(non_snake_case)]
fn _calls(users: &UsersClient, accounts: &AccountsClient) {
    let _ = users.GetUser(1);
    let _ = users.ListUsers();
    let _ = users.DeleteUser(1);
    let _ = accounts.OpenAccount("ada".into());
}

fn main() {
    let _ = UsersServer::new(Directory);
    let _ = AccountsServer::new(Directory);
    let _ = StrictServer::new(Directory);
}
