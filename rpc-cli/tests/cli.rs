//! The `rpc` tool as a person runs it, against the Fibonacci service (as
//! `fib_server` serves it) and a test service with structs, enums, options,
//! maps and a method without arguments, each on a queue of its own: what it
//! prints, and its exit status.

use rpc_runtime::{Client, RequestContext, Server, ServerHandle, rpc_service};
use rpc_tests::{PATIENCE, TestQueue, connect, within};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::{
    collections::BTreeMap,
    process::Output,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Notify;

const RPC: &str = env!("CARGO_BIN_EXE_rpc");

/// An item of the shop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub price: u32,
    pub note: Option<String>,
}

/// How an order travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Delivery {
    Pickup,
    Courier(String),
    Post { country: String, express: bool },
}

/// Why an order is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShopError {
    OutOfStock { item: String },
}

/// A shop, to call with every kind of value.
#[rpc_service]
pub trait Shop {
    /// Everything on sale.
    async fn catalogue(&self) -> Vec<Item>;
    /// Orders `count` of `item` (one if left out).
    async fn order(
        &self,
        item: Item,
        delivery: Delivery,
        count: Option<u32>,
    ) -> Result<String, ShopError>;
    /// Adds up the stock by shelf.
    async fn stock(&self, shelves: BTreeMap<u32, u64>) -> u64;
    /// The order with this id.
    async fn lookup(&self, id: uuid::Uuid) -> String;
    /// How many of `plan`'s deliveries go by courier.
    async fn couriers(&self, plan: Vec<Option<Delivery>>) -> usize;
    /// Greets someone.
    async fn greet(&self, name: String) -> String;
    /// The value of call metadata `name`.
    async fn header(&self, name: String) -> Option<String>;
    /// Notes `text` (for one-way calls).
    async fn note(&self, text: String);
    /// Sleeps `millis`.
    async fn nap(&self, millis: u64);
    /// Panics.
    async fn explode(&self) -> u32;
}

#[derive(Debug, Clone, Default)]
struct ShopImpl {
    notes: Arc<Mutex<Vec<String>>>,
    noted: Arc<Notify>,
}

impl Shop for ShopImpl {
    async fn catalogue(&self) -> Vec<Item> {
        vec![Item {
            name: "tea".into(),
            price: 3,
            note: None,
        }]
    }

    async fn order(
        &self,
        item: Item,
        delivery: Delivery,
        count: Option<u32>,
    ) -> Result<String, ShopError> {
        if item.price == 0 {
            return Err(ShopError::OutOfStock { item: item.name });
        }
        Ok(format!(
            "{} x {} ({}) by {delivery:?}",
            count.unwrap_or(1),
            item.name,
            item.note.as_deref().unwrap_or("-")
        ))
    }

    async fn stock(&self, shelves: BTreeMap<u32, u64>) -> u64 {
        shelves
            .iter()
            .map(|(shelf, count)| u64::from(*shelf) * count)
            .sum()
    }

    async fn lookup(&self, id: uuid::Uuid) -> String {
        format!("order {id}")
    }

    async fn couriers(&self, plan: Vec<Option<Delivery>>) -> usize {
        plan.iter()
            .filter(|delivery| matches!(delivery, Some(Delivery::Courier(_))))
            .count()
    }

    async fn greet(&self, name: String) -> String {
        format!("Hello, {name}!")
    }

    async fn header(&self, name: String) -> Option<String> {
        RequestContext::current()?.header(&name).map(str::to_owned)
    }

    async fn note(&self, text: String) {
        self.notes.lock().expect("notes").push(text);
        self.noted.notify_waiters();
    }

    async fn nap(&self, millis: u64) {
        tokio::time::sleep(Duration::from_millis(millis)).await;
    }

    async fn explode(&self) -> u32 {
        panic!("boom")
    }
}

/// A service served on a queue of its own for one test.
struct Served {
    server: ServerHandle,
    connection: rpc_runtime::Connection,
    /// Last: fields drop in order, so that a test that fails drops the
    /// server (aborting it) before the queue is deleted, rather than leave
    /// it to declare the queue again.
    queue: TestQueue,
}

impl Served {
    async fn shop(name: &str, shop: ShopImpl, introspection: bool) -> Self {
        Self::shop_with(name, shop, Server::builder().introspection(introspection)).await
    }

    /// The shop, behind an interceptor that wants `authorization: Bearer
    /// s3cret` on every request, `rpc.describe` included.
    async fn guarded_shop(name: &str) -> Self {
        let guard = Server::builder().interceptor(|request| {
            if request.header("authorization") == Some("Bearer s3cret") {
                Ok(())
            } else {
                Err(rpc_runtime::Fault::new(
                    rpc_runtime::FaultKind::Unauthenticated,
                    "send a valid token".into(),
                ))
            }
        });
        Self::shop_with(name, ShopImpl::default(), guard).await
    }

    async fn shop_with(name: &str, shop: ShopImpl, builder: rpc_runtime::ServerBuilder) -> Self {
        let connection = connect(name).await;
        let queue = TestQueue::new(name);
        let server = builder
            .queue(&queue.name)
            .serve(&connection, ShopServer::new(shop))
            .await
            .expect("serve the shop");
        Self {
            server,
            connection,
            queue,
        }
    }

    /// The Fibonacci service, as `fib_server` serves it.
    async fn fibonacci(name: &str) -> Self {
        let connection = connect(name).await;
        let queue = TestQueue::new(name);
        let server = Server::builder()
            .queue(&queue.name)
            .serve(
                &connection,
                rpc_examples::FibonacciServer::new(rpc_examples::IterativeFib),
            )
            .await
            .expect("serve fib");
        Self {
            server,
            connection,
            queue,
        }
    }

    fn queue(&self) -> &str {
        &self.queue.name
    }

    async fn stop(self) {
        self.server.shutdown().await;
        self.connection.close().await;
    }
}

/// Runs `rpc` with `args` against the test broker.
async fn rpc(args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(RPC);
    command
        .args(args)
        .env("AMQP_URL", rpc_tests::amqp_url())
        .kill_on_drop(true);
    within(PATIENCE, "rpc", command.output())
        .await
        .expect("run rpc")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The exit status, with what the tool printed when it is not `expected`.
#[track_caller]
fn assert_status(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
}

/// That the tool wrote `expected` on stderr, with what it wrote if not.
#[track_caller]
fn assert_stderr_has(output: &Output, expected: &str) {
    let written = stderr(output);
    assert!(
        written.contains(expected),
        "expected {expected:?} on stderr: {written}"
    );
}

fn json_out(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("stdout is not JSON ({error}): {}", stdout(output)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_shows_methods_types_and_docs() {
    let fib = Served::fibonacci("cli-describe").await;
    let output = rpc(&["describe", fib.queue()]).await;
    assert_status(&output, 0);
    let text = stdout(&output);
    assert!(text.contains("service Fibonacci on queue"), "{text}");
    assert!(
        text.contains("fib(n: u32) -> Result<u64, FibError>"),
        "{text}"
    );
    assert!(text.contains("The n-th Fibonacci number"), "{text}");
    assert!(
        text.contains("enum FibError { Overflow { n: u32 } }"),
        "{text}"
    );

    // As JSON: the description itself.
    let output = rpc(&["describe", fib.queue(), "--json"]).await;
    assert_status(&output, 0);
    let client = Client::new(&fib.connection).await.expect("client");
    let expected = within(PATIENCE, "describe", client.describe(fib.queue()))
        .await
        .expect("described");
    assert_eq!(
        json_out(&output),
        serde_json::to_value(&expected).expect("json")
    );
    fib.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_print_results_and_application_errors_as_json() {
    let fib = Served::fibonacci("cli-fib").await;
    let output = rpc(&["call", fib.queue(), "fib", "30"]).await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!(832040));

    // The method's own error: status 1, the error as JSON.
    let output = rpc(&["call", fib.queue(), "fib", "100"]).await;
    assert_status(&output, 1);
    assert_eq!(json_out(&output), json!({"Overflow": {"n": 100}}));

    // All arguments as one array.
    let output = rpc(&["call", fib.queue(), "fib", "--args", "[10]"]).await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!(55));
    fib.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_of_every_shape_are_converted_by_the_description() {
    let shop = Served::shop("cli-shapes", ShopImpl::default(), true).await;
    let q = shop.queue();

    let output = rpc(&["call", q, "catalogue"]).await;
    assert_status(&output, 0);
    assert_eq!(
        json_out(&output),
        json!([{"name": "tea", "price": 3, "note": null}])
    );

    // A struct with its Option field left out, a struct variant, and the
    // trailing Option argument left out.
    let output = rpc(&[
        "call",
        q,
        "order",
        r#"{"name": "tea", "price": 3}"#,
        r#"{"Post": {"country": "FR", "express": true}}"#,
    ])
    .await;
    assert_status(&output, 0);
    assert_eq!(
        json_out(&output),
        json!("1 x tea (-) by Post { country: \"FR\", express: true }")
    );

    // A unit variant, a newtype variant, the Option given.
    let output = rpc(&[
        "call",
        q,
        "order",
        r#"{"name":"tea","price":3,"note":"hot"}"#,
        r#""Pickup""#,
        "2",
    ])
    .await;
    assert_eq!(json_out(&output), json!("2 x tea (hot) by Pickup"));
    let output = rpc(&[
        "call",
        q,
        "order",
        r#"{"name":"tea","price":3}"#,
        r#"{"Courier": "Bob"}"#,
    ])
    .await;
    assert_eq!(json_out(&output), json!("1 x tea (-) by Courier(\"Bob\")"));

    // The method's error, an enum.
    let output = rpc(&[
        "call",
        q,
        "order",
        r#"{"name":"tea","price":0}"#,
        r#""Pickup""#,
    ])
    .await;
    assert_status(&output, 1);
    assert_eq!(json_out(&output), json!({"OutOfStock": {"item": "tea"}}));

    // A map with integer keys, written as a JSON object.
    let output = rpc(&["call", q, "stock", r#"{"1": 10, "2": 5}"#]).await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!(20));

    // Enums inside a Vec and an Option: every variant is described.
    let output = rpc(&[
        "call",
        q,
        "couriers",
        r#"[{"Courier": "Bob"}, null, "Pickup", {"Post": {"country": "FR", "express": false}}, {"Courier": "Al"}]"#,
    ])
    .await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!(2));

    // A Uuid: bytes on the wire, written as its string.
    let id = "67e55044-10b1-426f-9247-bb680e5fe0c8";
    let output = rpc(&["call", q, "lookup", &format!("\"{id}\"")]).await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!(format!("order {id}")));
    let output = rpc(&["call", q, "lookup", id]).await;
    assert_eq!(json_out(&output), json!(format!("order {id}")));

    // A bare word for a string.
    let output = rpc(&["call", q, "greet", "Alice"]).await;
    assert_eq!(json_out(&output), json!("Hello, Alice!"));

    // A bare word for an enum's unit variant, as for a string.
    let output = rpc(&["call", q, "order", r#"{"name":"tea","price":3}"#, "Pickup"]).await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!("1 x tea (-) by Pickup"));

    // A method returning nothing prints null.
    let output = rpc(&["call", q, "nap", "1"]).await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!(null));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistakes_are_reported_with_what_to_fix_and_status_2() {
    let shop = Served::shop("cli-mistakes", ShopImpl::default(), true).await;
    let q = shop.queue();

    let output = rpc(&["call", q, "greeet", "Alice"]).await;
    assert_status(&output, 2);
    assert_stderr_has(&output, "has no method `greeet`");

    assert_stderr_has(
        &output,
        "catalogue, order, stock, lookup, couriers, greet, header, note, nap, explode",
    );

    // Names AMQP cannot carry are the command's fault too.
    let output = rpc(&["call", "", "greet", "Alice"]).await;
    assert_status(&output, 2);
    assert_stderr_has(&output, "is not a valid queue name");

    // Which argument, where in it, what was expected, what was found.
    let output = rpc(&[
        "call",
        q,
        "order",
        r#"{"name":"tea","price":"3"}"#,
        r#""Pickup""#,
    ])
    .await;
    assert_status(&output, 2);
    assert_stderr_has(&output, "argument 1 (`item: Item`)");
    assert_stderr_has(&output, "at `.price`");
    assert_stderr_has(
        &output,
        "expected an integer from 0 to 4294967295 (u32), found a string (\"3\")",
    );

    let output = rpc(&[
        "call",
        q,
        "order",
        r#"{"name":"tea","price":3}"#,
        r#""Drone""#,
    ])
    .await;
    assert_status(&output, 2);
    assert_stderr_has(&output, r#"one of "Pickup", {"Courier": string}"#);
    // A bare name that is no variant gets the list of variants; a variant
    // that holds a value, its form; a bare word that is no name, the JSON
    // error.
    let output = rpc(&["call", q, "order", r#"{"name":"tea","price":3}"#, "Drone"]).await;
    assert_status(&output, 2);
    assert_stderr_has(&output, r#"one of "Pickup", {"Courier": string}"#);
    assert_stderr_has(&output, "found `Drone`");
    let output = rpc(&["call", q, "order", r#"{"name":"tea","price":3}"#, "Courier"]).await;
    assert_status(&output, 2);
    assert_stderr_has(&output, r#"expected {"Courier": string}, found no value"#);
    let output = rpc(&[
        "call",
        q,
        "order",
        r#"{"name":"tea","price":3}"#,
        "{Courier: Bob}",
    ])
    .await;
    assert_status(&output, 2);
    assert_stderr_has(&output, "argument 2 (`delivery: Delivery`) is not JSON");
    assert_stderr_has(&output, "an enum's unit variant, may also be written bare");

    let output = rpc(&["call", q, "greet", "a", "b"]).await;
    assert_status(&output, 2);
    assert_stderr_has(
        &output,
        "`greet` takes 1 argument (name: String), but 2 were given",
    );

    let output = rpc(&["call", q, "order", r#"{"name":"tea","price":3}"#]).await;
    assert_status(&output, 2);
    assert_stderr_has(&output, "takes 3 arguments");

    let output = rpc(&["call", q, "stock", "{oops"]).await;
    assert_status(&output, 2);
    assert_stderr_has(
        &output,
        "argument 1 (`shelves: BTreeMap<u32, u64>`) is not JSON",
    );

    let output = rpc(&["call", q, "greet", "Alice", "-H", "no spaces=x"]).await;
    assert_status(&output, 2);
    assert_stderr_has(&output, "not a valid header name");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_transport_errors_have_their_own_status() {
    let shop = Served::shop("cli-faults", ShopImpl::default(), true).await;
    let q = shop.queue().to_owned();

    let output = rpc(&["call", &q, "explode"]).await;
    assert_status(&output, 3);
    assert_stderr_has(&output, "handler_panicked");

    let output = rpc(&["call", &q, "nap", "5000", "--timeout", "300ms"]).await;
    assert_status(&output, 4);
    assert_stderr_has(&output, "no reply to `nap`");
    assert_stderr_has(&output, "--timeout");

    let missing = rpc_tests::unique("cli-missing");
    let output = rpc(&["describe", &missing]).await;
    assert_status(&output, 4);
    assert_stderr_has(&output, "no service is listening on queue");

    // The queue stays, with no server on it.
    shop.server.shutdown().await;
    let output = rpc(&["call", &q, "greet", "Alice"]).await;
    assert_status(&output, 4);
    assert_stderr_has(&output, "no server is consuming queue");
    assert_stderr_has(&output, "hint: start a server");

    let output = rpc(&[
        "call",
        &q,
        "greet",
        "--url",
        "amqp://guest:secret@127.0.0.1:1/%2f",
    ])
    .await;
    assert_status(&output, 4);
    let error = stderr(&output);
    assert_stderr_has(&output, "could not connect");
    assert!(
        !error.contains("secret"),
        "the password is printed: {error}"
    );
    shop.connection.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_introspection_is_still_called() {
    let shop = Served::shop("cli-old", ShopImpl::default(), false).await;
    let output = rpc(&["describe", shop.queue()]).await;
    assert_status(&output, 3);
    assert_stderr_has(&output, "does not describe itself");

    let output = rpc(&["call", shop.queue(), "greet", r#""Bob""#]).await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!("Hello, Bob!"));
    assert_stderr_has(&output, "warning");

    // Without a description nothing says the argument is a string: a bare
    // word is refused, and the advice is not to write it bare.
    let output = rpc(&["call", shop.queue(), "greet", "Alice"]).await;
    assert_status(&output, 2);
    assert_stderr_has(&output, "argument 1 is not JSON");
    assert_stderr_has(&output, "every argument must be JSON");
    assert_stderr_has(&output, r#"'"text"'"#);
    assert!(!stderr(&output).contains("bare"), "{}", stderr(&output));
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_timeout_fails_the_call_not_the_connection() {
    let shop = Served::shop("cli-short", ShopImpl::default(), true).await;
    let q = shop.queue().to_owned();
    // `--timeout` bounds the calls (`rpc.describe` first, then `nap`),
    // not the handshake with the broker: whichever call it cuts short,
    // the command fails with a timeout, status 4, never as a broker that
    // did not answer.
    for timeout in ["1ms", "0s"] {
        let output = rpc(&["call", &q, "nap", "5000", "--timeout", timeout]).await;
        assert_status(&output, 4);
        let error = stderr(&output);
        assert!(!error.contains("handshake"), "--timeout {timeout}: {error}");
        assert_stderr_has(&output, "hint: give the call longer with `--timeout`");
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_and_one_way_calls_reach_the_handler() {
    let shop_impl = ShopImpl::default();
    let shop = Served::shop("cli-headers", shop_impl.clone(), true).await;
    let output = rpc(&[
        "call",
        shop.queue(),
        "header",
        "tenant",
        "-H",
        "tenant=acme",
    ])
    .await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!("acme"));

    let noted = shop_impl.noted.notified();
    let output = rpc(&["call", shop.queue(), "note", "hello", "--one-way"]).await;
    assert_status(&output, 0);
    within(PATIENCE, "the one-way call", noted).await;
    assert_eq!(*shop_impl.notes.lock().expect("notes"), ["hello"]);
    shop.stop().await;
}

/// A service whose interceptor wants credentials is described and called
/// with them: `-H` goes with the `rpc.describe` asked first too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_reach_a_guarded_service_description_and_calls() {
    let shop = Served::guarded_shop("cli-guarded").await;
    let token = "authorization=Bearer s3cret";

    let output = rpc(&["describe", shop.queue(), "-H", token]).await;
    assert_status(&output, 0);
    assert!(stdout(&output).contains("greet"), "{}", stdout(&output));
    let output = rpc(&["call", shop.queue(), "greet", "Alice", "-H", token]).await;
    assert_status(&output, 0);
    assert_eq!(json_out(&output), json!("Hello, Alice!"));
    let output = rpc(&[
        "bench",
        shop.queue(),
        "greet",
        "Bob",
        "-H",
        token,
        "--calls",
        "20",
        "--warm-up",
        "0",
    ])
    .await;
    assert_status(&output, 0);

    // Without them, the server's fault says why.
    let output = rpc(&["call", shop.queue(), "greet", "Alice"]).await;
    assert_status(&output, 3);
    assert_stderr_has(&output, "send a valid token");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_rates_latencies_and_errors() {
    let fib = Served::fibonacci("cli-bench").await;
    let output = rpc(&[
        "bench",
        fib.queue(),
        "fib",
        "20",
        "--calls",
        "300",
        "--in-flight",
        "8",
        "--json",
    ])
    .await;
    assert_status(&output, 0);
    let report = json_out(&output);
    assert_eq!(report["calls"], json!(300));
    assert_eq!(report["ok"], json!(300));
    assert_eq!(report["errors"], json!({}));
    assert!(
        report["calls_per_second"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0)
    );
    let latency = &report["latency_ms"];
    for quantile in ["p50", "p90", "p99", "max"] {
        assert!(
            latency[quantile].as_f64().is_some_and(|ms| ms > 0.0),
            "{report}"
        );
    }
    assert!(latency["p50"].as_f64() <= latency["max"].as_f64());

    // Every call an application error: counted by kind.
    let output = rpc(&[
        "bench",
        fib.queue(),
        "fib",
        "100",
        "--calls",
        "50",
        "--json",
    ])
    .await;
    assert_status(&output, 0);
    let report = json_out(&output);
    assert_eq!(report["ok"], json!(0));
    assert_eq!(report["errors"], json!({"error": 50}));

    // The text report, by duration.
    let output = rpc(&["bench", fib.queue(), "fib", "5", "--duration", "300ms"]).await;
    assert_status(&output, 0);
    let text = stdout(&output);
    for line in ["calls/s", "p50", "p90", "p99", "max"] {
        assert!(text.contains(line), "{text}");
    }
    fib.stop().await;
}
