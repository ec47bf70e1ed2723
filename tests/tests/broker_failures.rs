//! The broker fails under a steady stream of calls: restarted (gracefully or
//! killed), or closing every connection. Calls in flight must fail at once
//! with `ConnectionLost`, never time out, never receive another call's
//! reply, and both sides must recover by themselves.
//!
//! Each test runs its own private RabbitMQ node (see
//! `rpc_tests::private_broker`); the machine's broker is never touched.
//! The figures each test prints (`RELIABILITY ...`, visible with
//! `--nocapture`) are recorded in docs/RELIABILITY.md.
//!
//! Timing bounds are measured from what the node did, never from when a
//! `rabbitmqctl` command started or returned (on a loaded machine the CLI
//! alone takes seconds to start, and `rabbitmqctl stop` closed the
//! connections 10 s after it was started in one run): failures from when a
//! probe connection of the test's own was closed by the node or broke
//! (`PrivateBroker::probe`), recovery from when the restarted node first
//! accepted a connection (`PrivateBroker::restart`).

use rpc_runtime::{Client, Connection, RpcError, Server};
use rpc_tests::{
    CallStream, LabClient, LabControl, PATIENCE, Tally, lab_server, private_broker::PrivateBroker,
    unique, within,
};
use std::{
    future::IntoFuture,
    time::{Duration, Instant},
};

/// Calls waiting for the connection must not time out: longer than any
/// outage here can last under the test's guards (a node booting on a busy
/// machine was down 25 s; `rabbitmqctl wait` gives it 180 s).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Concurrent callers in the stream.
const CALLERS: usize = 8;
/// Failures of calls in flight must come this soon after the node closed
/// its connections or died, as a probe connection saw it: "at once", as
/// opposed to at the call timeout (a bound far below it, not a speed
/// target).
const PROMPT: Duration = Duration::from_secs(10);
/// Calls must succeed again within this long after the node was back (its
/// port accepted a connection): the maximum reconnection delay (5 s by
/// default) plus setting the connection, the client and the server up again
/// on a loaded machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(20);

enum Failure {
    Stop,
    Kill,
    CloseAllConnections,
}

struct Setup {
    broker: PrivateBroker,
    control: LabControl,
    client: Client,
    lab: LabClient,
    server: rpc_runtime::ServerHandle,
}

async fn setup() -> Setup {
    let broker = PrivateBroker::start().await;
    let queue = unique("broker-failure");
    let server_connection = Connection::builder(broker.url())
        .name("server")
        .connect()
        .await
        .expect("server connection");
    let control = LabControl::default();
    let server = Server::builder()
        .queue(&queue)
        .serve(&server_connection, lab_server("s1", &control))
        .await
        .expect("serve");
    let client_connection = Connection::builder(broker.url())
        .name("client")
        .connect()
        .await
        .expect("client connection");
    let client = Client::builder()
        .timeout(CALL_TIMEOUT)
        .build(&client_connection)
        .await
        .expect("client");
    let lab = LabClient::new(client.clone()).with_queue(&queue);
    Setup {
        broker,
        control,
        client,
        lab,
        server,
    }
}

async fn scenario(name: &str, failure: Failure) {
    let Setup {
        mut broker,
        control,
        client,
        lab,
        server,
    } = setup().await;
    let stream = CallStream::start(&lab, CALLERS);
    stream.wait_successes(300).await;

    // Two calls certainly in flight when the broker fails.
    let held: Vec<_> = (0..2)
        .map(|tag| {
            let call = lab.hold(tag).into_future();
            tokio::spawn(async move { (call.await, Instant::now()) })
        })
        .collect();
    control.next_started().await;
    control.next_started().await;

    // How the node's clients see it go: a connection of the test's own that
    // the node closes (`stop`, `close_all_connections`) or that breaks
    // (`kill`). Its end, not the command that set the failure off, is when
    // the broker failed.
    let probe = broker.probe().await;
    let set_off = Instant::now();
    match failure {
        Failure::Stop => broker.stop().await,
        Failure::Kill => broker.kill(),
        Failure::CloseAllConnections => {
            broker.close_all_connections().await;
        }
    }
    let gone = probe.ended().await;
    if matches!(failure, Failure::Stop | Failure::CloseAllConnections) {
        assert!(
            gone.how.starts_with("connection.close 320"),
            "{name}: the node closes its connections, but the probe saw {}",
            gone.how
        );
    }
    let failed_at = gone.at;
    let mut lost_at = Vec::new();
    for call in within(
        PATIENCE,
        "held calls to fail",
        futures_util::future::join_all(held),
    )
    .await
    {
        match call.expect("task") {
            (Err(RpcError::ConnectionLost { method: "hold" }), at) => lost_at.push(at),
            (other, _) => {
                panic!("{name}: a call in flight must fail with ConnectionLost, got {other:?}")
            }
        }
    }
    // The orphaned handlers on the server may finish now.
    control.release(2);

    let restarted_at = match failure {
        Failure::Stop | Failure::Kill => {
            // While the broker is down, a call with a short timeout is not
            // sent, and says so.
            let short = lab
                .echo("down".into())
                .timeout(Duration::from_millis(300))
                .await;
            assert!(
                matches!(short, Err(RpcError::NotConnected { method: "echo" })),
                "{name}: expected NotConnected, got {short:?}"
            );
            // When the node accepted a connection again, not when
            // `rabbitmqctl wait` noticed.
            Some(broker.restart().await)
        }
        Failure::CloseAllConnections => None,
    };
    stream.wait_successes(300).await;
    let tally: Tally = stream.finish().await;

    // Every call in flight failed within `spread` of the first loss, and the
    // first loss came `first_loss` after the node closed its connections or
    // died (as the probe saw it).
    lost_at.extend(&tally.connection_lost);
    let first = lost_at.iter().min().copied().unwrap_or(failed_at);
    let last = lost_at.iter().max().copied().unwrap_or(failed_at);
    let first_loss = first.saturating_duration_since(failed_at);
    let spread = last.saturating_duration_since(first);
    // Back: the restarted node accepted a connection; or, when it only
    // closed the connections, once it had and the calls in flight had
    // failed (a success in between, on a connection not yet closed, is no
    // recovery).
    let back_at = restarted_at.unwrap_or(last.max(failed_at));
    let recovery = tally
        .first_success_after(back_at)
        .expect("calls succeed after recovery")
        .duration_since(back_at);
    eprintln!(
        "RELIABILITY {name}: calls={} ok={} lost_in_flight={} mismatched={} timeouts={} \
         not_connected={} other={} rabbitmqctl_lag={:?} first_loss_after={first_loss:?} \
         loss_spread={spread:?} broker_down_for={:?} recovery_after_back={recovery:?}",
        tally.calls() + 2,
        tally.ok,
        lost_at.len(),
        tally.mismatched,
        tally.timeouts,
        tally.not_connected,
        tally.other.len(),
        failed_at.saturating_duration_since(set_off),
        back_at.saturating_duration_since(failed_at),
    );
    assert_eq!(
        tally.mismatched, 0,
        "{name}: a caller received another call's reply"
    );
    assert_eq!(
        tally.timeouts, 0,
        "{name}: calls timed out instead of failing or recovering"
    );
    assert_eq!(
        tally.not_connected, 0,
        "{name}: calls gave up waiting for the connection"
    );
    assert!(
        tally.other.is_empty(),
        "{name}: unexpected failures: {:?}",
        tally.other
    );
    assert!(
        first_loss + spread < PROMPT,
        "{name}: calls in flight failed late ({first_loss:?} + {spread:?} after the node \
         closed its connections or died)"
    );
    assert!(
        recovery < RECOVERY_BOUND,
        "{name}: calls succeeded again only {recovery:?} after the broker was back"
    );
    assert_eq!(client.pending_calls(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_stopped_and_restarted_under_load() {
    scenario("broker-restart-graceful", Failure::Stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_under_load() {
    scenario("broker-restart-kill", Failure::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_closing_every_connection_under_load() {
    scenario("close-all-connections", Failure::CloseAllConnections).await;
}
