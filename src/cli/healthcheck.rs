//! `tessera healthcheck`: one GET of `/readyz` (or `/healthz`) on the configured listener, for a
//! container's HEALTHCHECK without curl in the image. A few lines over `std::net` do: the
//! request is fixed and only the status line matters.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

use crate::config::Settings;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    /// Probe /healthz (the process answers) instead of /readyz (database and signing key ready).
    #[arg(long)]
    live: bool,
    /// Longest the probe may take, connecting included.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// The most of the answer read: the status line and the start of a 503's reason.
const MAX_ANSWER: usize = 4096;

pub fn run(args: &HealthcheckArgs, settings: &Settings) -> anyhow::Result<()> {
    let path = if args.live { "/healthz" } else { "/readyz" };
    let addr = probe_address(settings.server.bind);
    let tls = settings.server.tls.cert.as_deref();
    let url = format!(
        "{}://{addr}{path}",
        if tls.is_some() { "https" } else { "http" }
    );
    let deadline = Instant::now() + args.timeout;
    let answer = probe(addr, path, tls, deadline).with_context(|| format!("{url}: no answer"))?;
    let (status, reason) = parse(&answer).with_context(|| format!("{url}: not HTTP"))?;
    if status != 200 {
        bail!("{url} answered {status} {reason}");
    }
    println!("ok: {url} answered 200");
    Ok(())
}

/// Where the server listening on `bind` is reached from this host: loopback for a wildcard.
fn probe_address(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

fn probe(
    addr: SocketAddr,
    path: &str,
    tls: Option<&std::path::Path>,
    deadline: Instant,
) -> anyhow::Result<Vec<u8>> {
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .context("timed out")
    };
    let tcp = TcpStream::connect_timeout(&addr, remaining()?)?;
    // Before anything is sent: a TLS handshake reads too, from a peer that may never answer.
    tcp.set_read_timeout(Some(remaining()?))?;
    tcp.set_write_timeout(Some(remaining()?))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nUser-Agent: tessera-healthcheck\r\n\r\n"
    );
    let mut stream: Box<dyn ReadWrite> = match tls {
        None => Box::new(tcp.try_clone()?),
        Some(cert) => Box::new(tls_stream(tcp.try_clone()?, addr, cert)?),
    };
    tcp.set_write_timeout(Some(remaining()?))?;
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while answer.len() < MAX_ANSWER {
        tcp.set_read_timeout(Some(remaining()?))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            // A TLS peer that closes without close_notify has still said all it had to.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(answer)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// `(status, what follows it)`: from the status line, and for a failure the first line of the
/// body (`/readyz` says why it is not ready there), at most 200 characters.
fn parse(answer: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(answer);
    let status_line = text.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        bail!("no status line");
    };
    if !version.starts_with("HTTP/") {
        bail!("no status line");
    }
    let status: u16 = code.parse().context("bad status code")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.lines().next().unwrap_or_default())
        .unwrap_or_default();
    let reason: String = body.chars().filter(|c| !c.is_control()).take(200).collect();
    Ok((status, reason))
}

/// HTTPS to our own listener: the certificate it presents must be the one `server.tls.cert`
/// names (its first), whatever host names it carries, since the probe dials an address.
fn tls_stream(
    tcp: TcpStream,
    addr: SocketAddr,
    cert: &std::path::Path,
) -> anyhow::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let expected = CertificateDer::pem_file_iter(cert)
        .and_then(|mut certs| certs.next().transpose())
        .with_context(|| format!("server.tls.cert: reading {}", cert.display()))?
        .with_context(|| format!("server.tls.cert: no certificate in {}", cert.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(pinned::PinnedCert {
        expected,
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let name = rustls_pki_types::ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    Ok(rustls::StreamOwned::new(connection, tcp))
}

mod pinned {
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::{DigitallySignedStruct, SignatureScheme};
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    /// Trusts exactly one certificate, and checks the handshake was signed by its key.
    #[derive(Debug)]
    pub struct PinnedCert {
        pub expected: CertificateDer<'static>,
        pub provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for PinnedCert {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if end_entity.as_ref() == self.expected.as_ref() {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "the server's certificate is not server.tls.cert".into(),
                ))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_probed_on_loopback() {
        let probe = |bind: &str| probe_address(bind.parse().expect("addr")).to_string();
        assert_eq!(probe("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(probe("[::]:8080"), "[::1]:8080");
        assert_eq!(probe("10.1.2.3:9000"), "10.1.2.3:9000");
        assert_eq!(probe("[fd00::1]:443"), "[fd00::1]:443");
    }

    #[test]
    fn status_and_reason_are_read() {
        let (status, reason) =
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").expect("ok");
        assert_eq!((status, reason.as_str()), (200, "ok"));
        let answer = b"HTTP/1.1 503 Service Unavailable\r\n\r\n{\"status\":\"unavailable\",\"reason\":\"no active signing key\"}";
        let (status, reason) = parse(answer).expect("503");
        assert_eq!(status, 503);
        assert!(reason.contains("no active signing key"), "{reason}");
        assert!(parse(b"SSH-2.0-OpenSSH_9.6\r\n").is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
