//! Call metadata and interceptors: headers a caller attaches reach the
//! handler; client interceptors add to every call or refuse one; server
//! interceptors refuse a request with a fault the caller receives, or
//! attach what the handler reads.

use rpc_runtime::{Client, Fault, FaultKind, InvalidHeader, Metadata, RpcError, Server};
use rpc_tests::{Caller, LabFixture, PATIENCE, within};
use std::{
    future::IntoFuture,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

fn pairs(entries: &[(&str, &str)]) -> Vec<(String, String)> {
    entries
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_client_and_interceptor_metadata_reach_the_handler() {
    let mut defaults = Metadata::new();
    defaults.insert("tenant", "acme").expect("a valid name");
    defaults.insert("region", "eu").expect("a valid name");
    let intercepted = Arc::new(AtomicUsize::new(0));
    let seen = intercepted.clone();
    let client = Client::builder()
        .metadata(defaults)
        .interceptor(move |call| {
            seen.fetch_add(1, Ordering::SeqCst);
            assert_eq!((call.service(), call.method()), ("Lab", "context"));
            call.metadata().insert("authorization", "Bearer t0ken")?;
            Ok(())
        });
    let fixture = LabFixture::builder("metadata").client(client).start().await;

    // The call's own header wins over the client's; the interceptor's is
    // added to both.
    let report = within(
        PATIENCE,
        "a call with metadata",
        fixture
            .lab
            .context()
            .header("region", "us")
            .header("request-id", "r-1"),
    )
    .await
    .expect("context");
    assert_eq!(
        report.metadata,
        pairs(&[
            ("authorization", "Bearer t0ken"),
            ("region", "us"),
            ("request-id", "r-1"),
            ("tenant", "acme"),
        ])
    );
    assert_eq!(intercepted.load(Ordering::SeqCst), 1);

    // A reserved or invalid name fails the call before it is sent.
    let handled = fixture.control.handled.load(Ordering::SeqCst);
    for bad in ["rpc-deadline", "traceparent", "x-death", "with space", ""] {
        let failed = fixture.lab.context().header(bad, "v").await;
        assert!(
            matches!(
                failed,
                Err(RpcError::InvalidHeader {
                    method: "context",
                    ..
                })
            ),
            "{bad:?}: {failed:?}"
        );
    }
    assert_eq!(fixture.control.handled.load(Ordering::SeqCst), handled);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_interceptor_can_refuse_a_call() {
    let client = Client::builder().interceptor(|call| {
        if call.metadata().get("authorization").is_none() {
            return Err("no credentials for this call".into());
        }
        Ok(())
    });
    let fixture = LabFixture::builder("client-refusal")
        .client(client)
        .start()
        .await;
    let refused = fixture.lab.context().await;
    match refused {
        Err(RpcError::Intercepted { method, message }) => {
            assert_eq!(method, "context");
            assert_eq!(message, "no credentials for this call");
        }
        other => panic!("expected Intercepted, got {other:?}"),
    }
    assert_eq!(
        fixture.control.handled.load(Ordering::SeqCst),
        0,
        "not sent"
    );
    let report = fixture
        .lab
        .context()
        .header("authorization", "yes")
        .await
        .expect("with credentials");
    assert_eq!(report.metadata, pairs(&[("authorization", "yes")]));
    assert_eq!(fixture.client.pending_calls(), 0);
    fixture.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_interceptors_refuse_with_faults_and_attach_extensions() {
    let server = Server::builder()
        .interceptor(|request| match request.header("authorization") {
            None => Err(Fault::new(
                FaultKind::Unauthenticated,
                "send an `authorization` header".into(),
            )),
            Some("Bearer good") => {
                request.insert_extension(Caller("alice".into()));
                Ok(())
            }
            Some(_) => Err(Fault::new(
                FaultKind::PermissionDenied,
                "this token may not call Lab".into(),
            )),
        })
        // A second interceptor sees what the first attached.
        .interceptor(|request| {
            if request.method() == "context" && request.extension::<Caller>().is_none() {
                return Err(Fault::new(FaultKind::Internal, "no caller".into()));
            }
            Ok(())
        });
    let fixture = LabFixture::builder("server-interceptors")
        .server(server)
        .start()
        .await;

    let unauthenticated = fixture.lab.context().await.expect_err("no header");
    let fault = unauthenticated.fault().expect("a fault");
    assert_eq!(fault.kind(), &FaultKind::Unauthenticated);
    assert_eq!(fault.message(), "send an `authorization` header");

    let denied = fixture
        .lab
        .context()
        .header("authorization", "Bearer bad")
        .await
        .expect_err("a bad token");
    assert_eq!(
        denied.fault().map(Fault::kind),
        Some(&FaultKind::PermissionDenied)
    );
    assert_eq!(
        fixture.control.handled.load(Ordering::SeqCst),
        0,
        "never ran"
    );

    let report = fixture
        .lab
        .context()
        .header("authorization", "Bearer good")
        .await
        .expect("a good token");
    assert_eq!(report.caller.as_deref(), Some("alice"));
    assert_eq!(fixture.control.handled.load(Ordering::SeqCst), 1);
    fixture.shutdown().await;
}

/// An interceptor's panic is caught as a method's: the caller gets a
/// `handler_panicked` fault at once, and the request is settled, so that
/// with one request of prefetch the next one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_server_interceptor_answers_with_a_fault_and_the_server_goes_on() {
    let server = Server::builder().interceptor(|request| {
        if request.header("boom").is_some() {
            panic!("an interceptor's bug");
        }
        Ok(())
    });
    let fixture = LabFixture::builder("interceptor-panic")
        .server(server)
        .prefetch(1)
        .start()
        .await;

    let error = within(
        PATIENCE,
        "a call whose interceptor panics",
        fixture.lab.echo("x".into()).header("boom", "1"),
    )
    .await
    .expect_err("the interceptor panicked");
    let fault = error.fault().expect("a fault, not a timeout");
    assert_eq!(fault.kind(), &FaultKind::HandlerPanicked);
    assert!(
        !fault.message().contains("an interceptor's bug"),
        "the panic's message stays in the server's log: {fault:?}"
    );
    assert_eq!(
        fixture.control.handled.load(Ordering::SeqCst),
        0,
        "never ran"
    );

    // With one request of prefetch, this is served only if the first was
    // settled.
    let echoed = within(PATIENCE, "the next call", fixture.lab.echo("fine".into()))
        .await
        .expect("the server goes on");
    assert_eq!(echoed, "fine");
    // The count drops once the reply is published and the request settled,
    // which may be just after the caller has its reply.
    within(PATIENCE, "nothing left in flight", async {
        while fixture.server.in_flight() != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    fixture.shutdown().await;
}

#[test]
fn metadata_refuses_reserved_and_invalid_names() {
    let mut metadata = Metadata::new();
    for name in [
        "traceparent",
        "TraceState",
        "rpc-anything",
        "X-Custom",
        "",
        "a b",
    ] {
        assert!(metadata.insert(name, "v").is_err(), "{name:?}");
    }
    metadata.insert("ok", "1").expect("valid");
    metadata.insert("ok", "2").expect("valid");
    assert_eq!(metadata.len(), 1);
    assert_eq!(metadata.get("ok"), Some("2"));
    // Values never show in Debug output: they may be credentials.
    metadata.insert("authorization", "s3cret").expect("valid");
    assert!(!format!("{metadata:?}").contains("s3cret"));
}

/// A request's properties travel in one AMQP frame, and a broker closes the
/// connection over a larger one: a call whose metadata would not fit fails
/// alone, before anything is sent, and every other call on the connection
/// goes on; metadata that fits arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_headers_would_not_fit_a_frame_fails_alone() {
    let fixture = LabFixture::start("metadata-frame").await;
    let lab = &fixture.lab;
    let held = tokio::spawn(lab.hold(7).into_future());
    assert_eq!(fixture.control.next_started().await, 7);

    // RabbitMQ's frame_max is 128 KiB unless configured otherwise.
    let huge = "a".repeat(200_000);
    let call = within(
        PATIENCE,
        "a call with a 200 kB header",
        lab.echo("x".into()).header("big", huge.clone()),
    )
    .await;
    let one_way = within(
        PATIENCE,
        "a one-way call with a 200 kB header",
        lab.record("y".into()).header("big", huge).one_way(),
    )
    .await;
    for (what, result) in [("call", call.map(drop)), ("one-way call", one_way)] {
        match result {
            Err(RpcError::InvalidHeader {
                source: InvalidHeader::TooLarge { size, limit },
                ..
            }) => assert!(size > 200_000 && limit < size, "{what}: {size} > {limit}"),
            other => panic!("{what}: {other:?}"),
        }
    }

    let large = "b".repeat(100_000);
    let report = within(
        PATIENCE,
        "a call with a 100 kB header",
        lab.context().header("large", large.clone()),
    )
    .await
    .expect("100 kB of metadata fits a frame");
    assert_eq!(report.metadata, pairs(&[("large", &large)]));

    fixture.control.release(1);
    let held = within(PATIENCE, "the call in flight meanwhile", held)
        .await
        .expect("task");
    assert!(held.is_ok(), "{held:?}");
    assert_eq!(fixture.connection.reconnections(), 0);
    fixture.shutdown().await;
}
