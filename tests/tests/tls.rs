//! `amqps://` through lapin's rustls, with the CA certificate given to
//! `ConnectionBuilder::tls_ca_certificates`, against a private RabbitMQ node
//! with a TLS listener and certificates made for the test.

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rpc_runtime::{Client, ConnectError, Connection, Server};
use rpc_tests::{
    LabClient, LabControl, PATIENCE, lab_server,
    private_broker::{PrivateBroker, TlsFiles},
    unique, within,
};
use std::path::Path;

/// A CA, and a certificate for `localhost` signed by it, written to `dir`.
fn certificates(dir: &Path) -> (TlsFiles, String) {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "rpc-tests CA");
    let ca_certificate = ca.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().expect("server key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    server
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let certificate = server.signed_by(&key, &issuer).expect("server certificate");

    std::fs::create_dir_all(dir).expect("certificate directory");
    let files = TlsFiles {
        ca_certificate: dir.join("ca.pem"),
        certificate: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.ca_certificate, ca_certificate.pem()).expect("write");
    std::fs::write(&files.certificate, certificate.pem()).expect("write");
    std::fs::write(&files.key, key.serialize_pem()).expect("write");
    (files, ca_certificate.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_works_with_the_ca_given_and_fails_without_it() {
    let dir = std::env::temp_dir().join(unique("tls"));
    let (files, ca_pem) = certificates(&dir);
    let broker = PrivateBroker::start_with_tls(&files).await;

    let connection = within(
        PATIENCE,
        "a TLS connection",
        Connection::builder(broker.tls_url())
            .tls_ca_certificates(ca_pem)
            .connect(),
    )
    .await
    .expect("amqps with the test CA");
    let queue = unique("tls");
    let server = Server::builder()
        .queue(&queue)
        .serve(&connection, lab_server("tls", &LabControl::default()))
        .await
        .expect("serve over TLS");
    let lab = LabClient::new(Client::new(&connection).await.expect("client")).with_queue(&queue);
    assert_eq!(
        lab.echo("secure".into()).await.expect("echo over TLS"),
        "secure"
    );
    server.shutdown().await;

    // Without the CA, the broker's certificate is not trusted.
    let untrusted = within(
        PATIENCE,
        "a TLS connection without the CA",
        Connection::connect(&broker.tls_url()),
    )
    .await;
    match untrusted {
        Err(error @ ConnectError::Broker { .. }) => {
            let message = error.to_string();
            assert!(
                message.to_lowercase().contains("certificate"),
                "the error says why: {message}"
            );
            assert!(!message.contains("guest:guest"), "{message}");
        }
        other => panic!("expected an untrusted certificate error, got {other:?}"),
    }
    drop(broker);
    let _ = std::fs::remove_dir_all(dir);
}
