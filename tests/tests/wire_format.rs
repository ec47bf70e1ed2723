//! The examples of `docs/PROTOCOL.md`, checked byte for byte against a live
//! server: requests published raw, as a client in another language would.

use rpc_examples::{FibonacciServer, IterativeFib};
use rpc_runtime::{Server, lapin::BasicProperties};
use rpc_tests::{
    LabFixture, TestQueue, connect,
    raw::{Raw, next_reply},
};
use std::{future::IntoFuture, time::Duration};

/// Publishes `body` as a call of `method` and returns the reply's body.
async fn call_raw(raw: &Raw, queue: &str, method: &str, body: &[u8]) -> Vec<u8> {
    let (reply_queue, mut replies) = raw.reply_queue().await.expect("reply queue");
    let properties = BasicProperties::default()
        .with_type(method.into())
        .with_correlation_id("doc-1".into())
        .with_reply_to(reply_queue.as_str().into())
        .with_content_type("application/msgpack".into())
        .with_expiration("30000".into());
    raw.publish(queue, body, properties).await.expect("publish");
    let (properties, reply) = next_reply(&mut replies).await;
    assert_eq!(
        properties.correlation_id().as_ref().map(|id| id.as_str()),
        Some("doc-1")
    );
    reply
}

fn hex(bytes: &str) -> Vec<u8> {
    bytes
        .split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).expect("hex"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_fibonacci_exchanges_are_exact() {
    let queue = TestQueue::new("wire-fib");
    let connection = connect("wire-fib").await;
    let server = Server::builder()
        .queue(&queue.name)
        .serve(&connection, FibonacciServer::new(IterativeFib))
        .await
        .expect("serve");
    let raw = Raw::open().await.expect("raw");

    let ok = call_raw(&raw, &queue.name, "fib", &hex("91 1e")).await;
    assert_eq!(ok, hex("81 a2 6f 6b ce 00 0c b2 28"), "{{\"ok\": 832040}}");

    let err = call_raw(&raw, &queue.name, "fib", &[0x91, 94]).await;
    assert_eq!(
        err,
        hex("81 a3 65 72 72 81 a8 4f 76 65 72 66 6c 6f 77 81 a1 6e 5e"),
        "{{\"err\": {{\"Overflow\": {{\"n\": 94}}}}}}"
    );

    let fault = call_raw(&raw, &queue.name, "fibb", &hex("91 1e")).await;
    let mut expected = Vec::new();
    rmp::encode::write_map_len(&mut expected, 1).expect("encode");
    rmp::encode::write_str(&mut expected, "fault").expect("encode");
    rmp::encode::write_map_len(&mut expected, 2).expect("encode");
    rmp::encode::write_str(&mut expected, "kind").expect("encode");
    rmp::encode::write_str(&mut expected, "unknown_method").expect("encode");
    rmp::encode::write_str(&mut expected, "message").expect("encode");
    rmp::encode::write_str(
        &mut expected,
        "the service `Fibonacci` has no method `fibb` (check the method's name, and that no \
         other service consumes the same queue)",
    )
    .expect("encode");
    assert_eq!(fault, expected);
    assert!(fault.starts_with(&hex(
        "81 a5 66 61 75 6c 74 82 a4 6b 69 6e 64 ae 75 6e 6b 6e 6f 77 6e 5f 6d 65 74 68 6f 64 a7 6d 65 73 73 61 67 65"
    )));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoders_accept_the_documented_alternatives() {
    let fixture = LabFixture::start("wire-values").await;
    let LabFixture { queue, .. } = &fixture;
    let raw = Raw::open().await.expect("raw");

    // describe({"Circle": {"radius": 2}}, [3, 4]): an integer for a float,
    // and a struct as an array of its fields.
    let mut body = hex("92 81 a6 43 69 72 63 6c 65 81 a6 72 61 64 69 75 73 02");
    body.extend(hex("92 03 04"));
    let reply = call_raw(&raw, &queue.name, "describe", &body).await;
    let reply: std::collections::HashMap<String, String> =
        rmp_serde::from_slice(&reply).expect("an ok reply with a string");
    assert_eq!(reply["ok"], "Circle { radius: 2.0 } at (3, 4)");

    // describe("Dot", {"x": 1, "y": 2}): a unit variant as a string.
    let mut body = hex("92 a3 44 6f 74");
    body.extend(hex("82 a1 78 01 a1 79 02"));
    let reply = call_raw(&raw, &queue.name, "describe", &body).await;
    let reply: std::collections::HashMap<String, String> =
        rmp_serde::from_slice(&reply).expect("an ok reply with a string");
    assert_eq!(reply["ok"], "Dot at (1, 2)");

    // nothing(): [] in, {"ok": nil} out.
    let reply = call_raw(&raw, &queue.name, "nothing", &hex("90")).await;
    assert_eq!(reply, hex("81 a2 6f 6b c0"));

    // add(300, -1): integers in any encoding that fits.
    let reply = call_raw(&raw, &queue.name, "add", &hex("92 cd 01 2c ff")).await;
    assert_eq!(reply, hex("81 a2 6f 6b cd 01 2b"));
    fixture.shutdown().await;
}

/// Binary data, and 128-bit integers, as the documentation says they go.
#[rpc_runtime::rpc_service]
pub trait Blobs {
    /// The length of a blob sent as MessagePack `bin`.
    async fn bin_len(&self, data: serde_bytes::ByteBuf) -> usize;
    /// The length of a plain `Vec<u8>`, which goes as an array of integers.
    async fn array_len(&self, data: Vec<u8>) -> usize;
    /// Returns its arguments.
    async fn wide(&self, unsigned: u128, signed: i128) -> (u128, i128);
}

struct Measure;

impl Blobs for Measure {
    async fn bin_len(&self, data: serde_bytes::ByteBuf) -> usize {
        data.len()
    }

    async fn array_len(&self, data: Vec<u8>) -> usize {
        data.len()
    }

    async fn wide(&self, unsigned: u128, signed: i128) -> (u128, i128) {
        (unsigned, signed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_data_goes_as_bin_and_wide_integers_as_sixteen_bytes() {
    use futures_util::StreamExt;
    use rpc_runtime::lapin::{options::BasicConsumeOptions, types::FieldTable};

    // What a client sends, read off a queue that nobody serves.
    let queue = TestQueue::new("wire-bytes");
    let connection = connect("wire-bytes").await;
    let raw = Raw::open().await.expect("raw");
    raw.channel
        .queue_declare(
            queue.name.as_str().into(),
            rpc_runtime::lapin::options::QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let blobs = BlobsClient::new(rpc_runtime::Client::new(&connection).await.expect("client"))
        .with_queue(&queue.name);
    let mut consumer = raw
        .channel
        .basic_consume(
            queue.name.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut next_request = async |call: rpc_runtime::Call<_>| {
        let call: rpc_runtime::Call<rpc_runtime::Plain<usize>> = call;
        // Sent and left unanswered: only the request matters here.
        drop(tokio::spawn(
            call.timeout(Duration::from_secs(1)).into_future(),
        ));
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("a request")
            .expect("open")
            .expect("delivery");
        delivery.data
    };
    let bytes = vec![7u8, 200, 0];
    // [bin8 of 3 bytes]
    assert_eq!(
        next_request(blobs.bin_len(serde_bytes::ByteBuf::from(bytes.clone()))).await,
        hex("91 c4 03 07 cc c8 00")[..3]
            .iter()
            .chain(&bytes)
            .copied()
            .collect::<Vec<u8>>()
    );
    // [[7, 200, 0]]: an array of integers, 200 taking two bytes.
    assert_eq!(
        next_request(blobs.array_len(bytes)).await,
        hex("91 93 07 cc c8 00")
    );

    // End to end: 3 MiB as `bin` fits under the 4 MiB limit; as an array
    // of integers (about 1.5 bytes each) it does not, and the client says so.
    let tag = consumer.tag();
    raw.channel
        .basic_cancel(tag, Default::default())
        .await
        .expect("cancel the raw consumer");
    let server = Server::builder()
        .queue(&queue.name)
        .serve(&connection, BlobsServer::new(Measure))
        .await
        .expect("serve");
    let three_mib = vec![0xa5u8; 3 << 20];
    let sent = blobs
        .bin_len(serde_bytes::ByteBuf::from(three_mib.clone()))
        .await;
    assert_eq!(sent.expect("3 MiB as bin"), 3 << 20);
    let refused = blobs.array_len(three_mib).await;
    assert!(
        matches!(refused, Err(rpc_runtime::RpcError::RequestTooLarge { .. })),
        "{refused:?}"
    );

    // u128 and i128: MessagePack `bin` of 16 bytes, big-endian (two's
    // complement for i128), both ways.
    let (unsigned, signed) = blobs.wide(u128::MAX, i128::MIN).await.expect("wide");
    assert_eq!((unsigned, signed), (u128::MAX, i128::MIN));
    let mut body = hex("92 c4 10");
    body.extend(u128::MAX.to_be_bytes());
    body.extend(hex("c4 10"));
    body.extend((-2i128).to_be_bytes());
    let reply = call_raw(&raw, &queue.name, "wide", &body).await;
    let mut expected = hex("81 a2 6f 6b 92 c4 10");
    expected.extend(u128::MAX.to_be_bytes());
    expected.extend(hex("c4 10"));
    expected.extend((-2i128).to_be_bytes());
    assert_eq!(reply, expected);
    // Any integer encoding that fits is accepted too.
    let reply = call_raw(&raw, &queue.name, "wide", &hex("92 07 ff")).await;
    let mut expected = hex("81 a2 6f 6b 92 c4 10");
    expected.extend(7u128.to_be_bytes());
    expected.extend(hex("c4 10"));
    expected.extend((-1i128).to_be_bytes());
    assert_eq!(reply, expected);
    server.shutdown().await;
}
