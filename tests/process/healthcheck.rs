//! `tessera healthcheck`: the probe a container runtime runs against the listener the
//! settings name.

use crate::common::server::{Server, free_port};
use crate::common::{Backend, TestDb};
use crate::tls::start_tls;

/// `tessera healthcheck` probes the listener the settings name: 0 and one line on stdout when
/// it answers 200; 1 and one line on stderr when nothing listens or it is not ready.
async fn healthcheck_probes_the_configured_listener(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut server = Server::start(&db, &[]);
    server.wait_live(&reqwest::Client::new()).await;
    let port = server.port.to_string();
    let check = |args: &[&str], extra: &[(&str, &str)]| {
        let out = server.run_cli(args, None, extra);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let ready = format!("ok: http://127.0.0.1:{port}/readyz answered 200\n");
    assert_eq!(
        check(&["healthcheck"], &[]),
        (Some(0), ready.clone(), String::new())
    );
    assert_eq!(
        check(&["healthcheck", "--live"], &[]),
        (
            Some(0),
            format!("ok: http://127.0.0.1:{port}/healthz answered 200\n"),
            String::new()
        )
    );
    // A wildcard bind is probed on loopback.
    let wildcard = format!("0.0.0.0:{port}");
    assert_eq!(
        check(&["healthcheck"], &[("TESSERA__SERVER__BIND", &wildcard)]),
        (Some(0), ready, String::new())
    );

    let nothing = format!("127.0.0.1:{}", free_port());
    let (code, stdout, stderr) = check(&["healthcheck"], &[("TESSERA__SERVER__BIND", &nothing)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with(&format!("error: http://{nothing}/readyz: no answer"))
            && stderr.lines().count() == 1,
        "{stderr}"
    );

    if backend == Backend::Postgres {
        // The database gone: not ready (1), still alive (0).
        db.drop_database().await;
        let (code, _, stderr) = check(&["healthcheck", "--timeout", "20s"], &[]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("/readyz answered 503") && stderr.contains("database unreachable"),
            "{stderr}"
        );
        assert_eq!(check(&["healthcheck", "--live"], &[]).0, Some(0));
    }
}

crate::both_backends!(healthcheck_probes_the_configured_listener);

/// With `server.tls` set, the probe speaks HTTPS and trusts exactly the configured certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_speaks_tls_to_a_tls_listener() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (server, _https) = start_tls(&db).await;
    let out = server.run_cli(&["healthcheck"], None, &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "ok: https://127.0.0.1:{}/readyz answered 200\n",
            server.port
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    // Another certificate than the one the server presents is refused.
    let other = db.path().join("other.crt");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("cert");
    std::fs::write(&other, cert.cert.pem()).expect("write cert");
    let out = server.run_cli(
        &["healthcheck"],
        None,
        &[("TESSERA__SERVER__TLS__CERT", other.to_str().expect("utf8"))],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not server.tls.cert"), "{stderr}");
}
