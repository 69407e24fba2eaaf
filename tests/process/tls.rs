//! HTTPS on a certificate the settings name.

use serde_json::Value;

use crate::common::server::Server;
use crate::common::{Backend, TestDb};

/// `tessera serve` with HTTPS on a self-signed certificate for 127.0.0.1 written into the test's
/// directory, up and answering; and a client that trusts that certificate.
pub(crate) async fn start_tls(db: &TestDb) -> (Server, reqwest::Client) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    let cert_path = db.path().join("tls.crt");
    let key_path = db.path().join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let mut server = Server::start(
        db,
        &[
            (
                "TESSERA__SERVER__TLS__CERT",
                cert_path.to_str().expect("utf8"),
            ),
            (
                "TESSERA__SERVER__TLS__KEY",
                key_path.to_str().expect("utf8"),
            ),
        ],
    );
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("root");
    let https = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .expect("client");
    server.wait_live(&https).await;
    (server, https)
}

/// HTTPS with a self-signed certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_tls_with_a_self_signed_certificate() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (server, https) = start_tls(&db).await;
    let jwks: Value = https
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", server.port))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 200),
        "plain HTTP is not served"
    );
}
