//! Passwords in AMQP URLs never reach logs or error messages: everything
//! logged (at TRACE, lapin's logs included) and every error shown while
//! connecting, failing, reconnecting and serving is searched for them, for
//! well-formed URLs and for a table of malformed ones.
//!
//! Alone in its binary: it installs the process's global log subscriber.

use rpc_runtime::{Client, ConnectError, Connection, Server};
use rpc_tests::{
    Captured, LabClient, LabControl, PATIENCE, lab_server, private_broker::PrivateBroker, unique,
    within,
};
use std::time::Duration;

const PASSWORD: &str = "Sup3r-S3cret-Pa55";
const WRONG: &str = "Wr0ng-Pa55w0rd-xyz";
/// The halves of the passwords of malformed URLs.
const MALFORMED_PARTS: [&str; 2] = ["Ma1f0rm3d", "S3cr3tHalf"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_appear_in_no_log_and_no_error() {
    let captured = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .with_writer(captured.clone())
        .with_ansi(false)
        .init();

    let broker = PrivateBroker::start().await;
    broker
        .ctl(&["add_user", "rpc-secret-user", PASSWORD])
        .await
        .expect("add user");
    broker
        .ctl(&[
            "set_permissions",
            "-p",
            "/",
            "rpc-secret-user",
            ".*",
            ".*",
            ".*",
        ])
        .await
        .expect("set permissions");
    let base = broker.url();
    let port = base
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("port");
    let url = format!("amqp://rpc-secret-user:{PASSWORD}@127.0.0.1:{port}/%2f");
    let mut errors = Vec::new();

    // Connect, serve, call; then have the broker close every connection, so
    // that both sides log their loss and reconnect.
    let connection = Connection::builder(&url)
        .reconnect_delay(Duration::from_millis(20), Duration::from_millis(200))
        .connect()
        .await
        .expect("connect");
    errors.push(format!("{connection:?}"));
    let queue = unique("secrets");
    let server = Server::builder()
        .queue(&queue)
        .serve(&connection, lab_server("s", &LabControl::default()))
        .await
        .expect("serve");
    let lab = LabClient::new(Client::new(&connection).await.expect("client")).with_queue(&queue);
    assert_eq!(lab.echo("a".into()).await.expect("echo"), "a");
    broker.close_all_connections().await;
    let echoed = within(PATIENCE, "a call after reconnection", lab.echo("b".into())).await;
    assert_eq!(echoed.expect("echo after reconnection"), "b");
    server.shutdown().await;
    connection.close().await;

    // Errors: a wrong password, an unreachable broker, a malformed URL.
    let wrong = format!("amqp://rpc-secret-user:{WRONG}@127.0.0.1:{port}/%2f");
    let refused = Connection::connect(&wrong)
        .await
        .expect_err("wrong password");
    assert!(matches!(refused, ConnectError::Broker { .. }));
    errors.push(format!("{refused} / {refused:?}"));
    let closed_port = rpc_tests::local_listener()
        .await
        .local_addr()
        .expect("addr")
        .port();
    let unreachable = format!("amqp://rpc-secret-user:{PASSWORD}@127.0.0.1:{closed_port}/%2f");
    let error = Connection::connect(&unreachable)
        .await
        .expect_err("unreachable");
    errors.push(format!("{error} / {error:?}"));
    let malformed = format!("amqp://rpc-secret-user:{PASSWORD}@127.0.0.1:port/%2f");
    let error = Connection::connect(&malformed)
        .await
        .expect_err("malformed");
    assert!(
        matches!(error, ConnectError::InvalidUrl { .. }),
        "{error:?}"
    );
    errors.push(format!("{error} / {error:?}"));
    errors.push(format!("{:?}", Connection::builder(&url)));

    // Malformed URLs, as people write them: a password with an unencoded
    // `/`, `#`, `?`, `@`, `:` or space, a mistyped scheme, a lost host. Each
    // password is MALFORMED_PARTS joined by an odd character; no part of it
    // may show, whether the URL parses (then the connection fails) or not.
    let secret = |odd: &str| MALFORMED_PARTS.join(odd);
    let malformed_urls = [
        format!(
            "amqp://rpc-secret-user:{}@127.0.0.1:{port}/%2f",
            secret("/")
        ),
        format!(
            "amqp://rpc-secret-user:{}@127.0.0.1:{port}/%2f",
            secret("#")
        ),
        format!(
            "amqp://rpc-secret-user:{}@127.0.0.1:{port}/%2f",
            secret("?")
        ),
        format!(
            "amqp://rpc-secret-user:{}@127.0.0.1:{port}/%2f",
            secret(" ")
        ),
        format!(
            "amqp://rpc-secret-user:{}@127.0.0.1:{port}/%2f",
            secret("@")
        ),
        format!(
            "amqp://rpc-secret-user:{}@127.0.0.1:{port}/%2f",
            secret(":")
        ),
        format!("amqp//rpc-secret-user:{}@127.0.0.1:{port}/%2f", secret("")),
        format!("amqp:/rpc-secret-user:{}@127.0.0.1:{port}/%2f", secret("")),
        format!("rpc-secret-user:{}@127.0.0.1:{port}", secret("")),
        format!(
            " amqp://rpc-secret-user:{}@127.0.0.1:{port}/%2f",
            secret("")
        ),
        format!("amqp://rpc-secret-user:{}", secret("/")),
        format!("amqp://{}@127.0.0.1:{port}/%2f", secret("")),
        format!(
            "amqp://rpc-secret-user:{}@127.0.0.1:{closed_port}/%2f",
            secret("")
        ),
        format!("http://rpc-secret-user:{}@127.0.0.1:{port}/%2f", secret("")),
    ];
    for malformed in &malformed_urls {
        let builder = Connection::builder(malformed).connect_timeout(PATIENCE);
        errors.push(format!("{builder:?}"));
        match Connection::connect(malformed).await {
            Ok(connection) => panic!("{malformed:?} connected: {connection:?}"),
            Err(error) => errors.push(format!("{error} / {error:?}")),
        }
    }

    let logs = captured.text();
    assert!(
        logs.contains("reconnected to the broker") && logs.contains(":***@"),
        "the logs were captured and show redacted URLs"
    );
    for text in errors.iter().chain(std::iter::once(&logs)) {
        for secret in [PASSWORD, WRONG].iter().chain(&MALFORMED_PARTS) {
            assert!(!text.contains(secret), "a password leaked:\n{text}");
        }
    }
}
