//! What a server logs of the requests it refuses or cannot run: one WARN
//! per request, with its method, correlation id and reason, never a value
//! from its body nor a line break a caller sent; and no more than the
//! server's budget however many come.
//!
//! Alone in its binary: it installs the process's global log subscriber.

use rpc_runtime::lapin::BasicProperties;
use rpc_tests::{Captured, LabFixture, PATIENCE, raw, within};
use std::time::{Duration, Instant};

/// The WARN and ERROR lines of the server's faults in what was captured.
fn fault_lines(captured: &Captured) -> Vec<String> {
    captured
        .lines()
        .into_iter()
        .filter(|line| line.contains("a request could not run") || line.contains("panicked"))
        .collect()
}

/// A value in a request body that must never reach a log.
const BODY_MARKER: &str = "B0DY-M4RK3R";

fn request(method: &str, correlation_id: &str, reply_to: &str) -> BasicProperties {
    BasicProperties::default()
        .with_type(method.into())
        .with_correlation_id(correlation_id.into())
        .with_reply_to(reply_to.into())
        .with_content_type("application/msgpack".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_logged_once_each_without_bodies_and_within_a_budget() {
    let captured = Captured::default();
    // Everything the framework logs; lapin's own logs are off, as the README
    // recommends (it warns with the body of every returned message).
    tracing_subscriber::fmt()
        .with_env_filter("trace,lapin=off")
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();

    let fixture = LabFixture::start("logs").await;
    let LabFixture { queue, .. } = &fixture;
    let raw = raw::Raw::open().await.expect("raw connection");
    let (reply_to, mut replies) = raw.reply_queue().await.expect("reply queue");

    // A bad request (a shape that names no variant, which the decoder's
    // message quotes) and an unknown method, both two-way: each gets its
    // fault reply, and one WARN line.
    let point = rpc_tests::Point { x: 1, y: 2 };
    let body = rmp_serde::to_vec_named(&(BODY_MARKER, point)).expect("encode");
    raw.publish(
        &queue.name,
        &body,
        request("describe", "cid-bad-1", &reply_to),
    )
    .await
    .expect("publish");
    let (_, reply) = raw::next_reply(&mut replies).await;
    let fault = raw::decode_fault(&reply);
    assert_eq!(fault.kind, "bad_request");
    assert!(
        fault.message.contains(BODY_MARKER),
        "the caller sees what it sent: {}",
        fault.message
    );
    raw.publish(
        &queue.name,
        &[0x90],
        request("nope", "cid-unknown-1", &reply_to),
    )
    .await
    .expect("publish");
    let (_, reply) = raw::next_reply(&mut replies).await;
    assert_eq!(raw::decode_fault(&reply).kind, "unknown_method");
    // A method name with a line break, which the reason quotes: escaped,
    // it cannot forge a line of its own.
    raw.publish(
        &queue.name,
        &[0x90],
        request(
            "nope\nFORGED ERROR rpc_runtime: forged",
            "cid-forged-1",
            &reply_to,
        ),
    )
    .await
    .expect("publish");
    let (_, reply) = raw::next_reply(&mut replies).await;
    assert_eq!(raw::decode_fault(&reply).kind, "unknown_method");

    let lines = fault_lines(&captured);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(
        lines[2].contains(r"no method `nope\nFORGED ERROR"),
        "{}",
        lines[2]
    );
    assert!(
        !captured
            .lines()
            .iter()
            .any(|line| line.starts_with("FORGED")),
        "a request forged a log line: {:#?}",
        captured
            .lines()
            .iter()
            .filter(|line| line.contains("FORGED"))
            .collect::<Vec<_>>()
    );
    assert!(
        lines[0].contains("WARN")
            && lines[0].contains(r#"method="describe""#)
            && lines[0].contains(r#"correlation_id="cid-bad-1""#)
            && lines[0].contains("bad_request"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("WARN")
            && lines[1].contains(r#"method="nope""#)
            && lines[1].contains(r#"correlation_id="cid-unknown-1""#)
            && lines[1].contains("unknown_method"),
        "{}",
        lines[1]
    );

    // A flood of bad requests: answered each, logged within the budget of
    // ten lines a second.
    const FLOOD: usize = 300;
    let started = Instant::now();
    for i in 0..FLOOD {
        let correlation_id = format!("cid-flood-{i}");
        raw.publish(
            &queue.name,
            &body,
            request("describe", &correlation_id, &reply_to),
        )
        .await
        .expect("publish");
    }
    for _ in 0..FLOOD {
        let (_, reply) = raw::next_reply(&mut replies).await;
        assert_eq!(raw::decode_fault(&reply).kind, "bad_request");
    }
    let seconds = started.elapsed().as_secs() as usize + 1;
    let flood_lines = fault_lines(&captured).len() - 3;
    assert!(
        flood_lines <= 10 * (seconds + 1),
        "{flood_lines} lines for {FLOOD} faults in {seconds} s"
    );
    // Once the window has passed, the next line says how many were left out.
    within(PATIENCE, "the budget to refill", async {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            raw.publish(
                &queue.name,
                &body,
                request("describe", "cid-after", &reply_to),
            )
            .await
            .expect("publish");
            raw::next_reply(&mut replies).await;
            let lines = fault_lines(&captured);
            if let Some(last) = lines.last()
                && last.contains("cid-after")
            {
                let suppressed = last
                    .split("suppressed=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|count| count.parse::<usize>().ok())
                    .expect("a suppressed count");
                assert!(suppressed > 0 && suppressed < FLOOD, "{last}");
                return;
            }
        }
    })
    .await;

    let logs = captured.lines().join("\n");
    assert!(!logs.contains(BODY_MARKER), "a body value was logged");
    fixture.shutdown().await;
}
