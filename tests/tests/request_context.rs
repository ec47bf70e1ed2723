//! A handler's `RequestContext` goes where its work goes: into the tasks it
//! spawns and the blocking work it hands off, when carried there.

use rpc_runtime::{Client, RequestContext, Server, rpc_service};
use rpc_tests::{PATIENCE, TestQueue, connect, within};
use serde::{Deserialize, Serialize};

/// What a handler saw of its request, here and in the work it handed off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// The method and correlation id in the handler itself.
    pub handler: Option<(String, String)>,
    /// In a task spawned without carrying the context.
    pub plain_task: Option<(String, String)>,
    /// In a task spawned with `RequestContext::scope`.
    pub carried_task: Option<(String, String)>,
    /// In blocking work run with `RequestContext::in_scope`.
    pub blocking: Option<(String, String)>,
}

#[rpc_service]
pub trait Contexts {
    /// Reports what the handler and the work it spawns see.
    async fn look(&self) -> Seen;
}

fn current() -> Option<(String, String)> {
    RequestContext::current().map(|request| {
        (
            request.method().to_owned(),
            request.correlation_id().unwrap_or_default().to_owned(),
        )
    })
}

struct Looker;

impl Contexts for Looker {
    async fn look(&self) -> Seen {
        let context = RequestContext::current().expect("in a handler");
        let plain_task = tokio::spawn(async { current() }).await.expect("task");
        let carried_task = tokio::spawn(context.clone().scope(async { current() }))
            .await
            .expect("task");
        let blocking = tokio::task::spawn_blocking(move || context.in_scope(current))
            .await
            .expect("blocking task");
        Seen {
            handler: current(),
            plain_task,
            carried_task,
            blocking,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_is_carried_into_spawned_and_blocking_work() {
    let queue = TestQueue::new("context");
    let connection = connect("context").await;
    let server = Server::builder()
        .queue(&queue.name)
        .serve(&connection, ContextsServer::new(Looker))
        .await
        .expect("serve");
    let client = ContextsClient::new(Client::new(&connection).await.expect("client"))
        .with_queue(&queue.name);

    let seen = within(PATIENCE, "a call", client.look())
        .await
        .expect("look");
    let (method, correlation_id) = seen.handler.clone().expect("the handler has a context");
    assert_eq!(method, "look");
    assert!(!correlation_id.is_empty());
    assert_eq!(seen.plain_task, None, "a task spawned as is has no context");
    assert_eq!(seen.carried_task, seen.handler, "carried with scope");
    assert_eq!(seen.blocking, seen.handler, "carried with in_scope");
    server.shutdown().await;
}
