//! Hostile input: a table of malformed and malicious requests against the token, revocation
//! and introspection endpoints, each with the exact status and error code it must get. No row
//! may ever produce a 5xx, and the server must serve normally afterwards. Also: forged,
//! tampered and foreign-key JWTs at the introspection endpoint are `{"active": false}`, and
//! genuine tokens introspect with every RFC 7662 §2.2 member.

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::{Value, json};
use tessera::admin::ClientSpec;
use tessera::clock::Clock;
use tessera::crypto::jwt::JwtSigner;
use tessera::crypto::keys::{self, KeyAlgorithm};

use crate::both_backends;
use crate::helpers::{Backend, Client, ISSUER, PASSWORD, TestApp, basic, claims, spawn_app};

const FORM: &str = "application/x-www-form-urlencoded";
const TOKEN: &str = "/oauth/token";
const REVOKE: &str = "/oauth/revoke";
const INTROSPECT: &str = "/oauth/introspect";

/// What a row must get besides its status.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// An RFC 6749 §5.2 error body with this code.
    Error(&'static str),
    /// Introspection: exactly `{"active": false}`.
    Inactive,
    /// Revocation: 200 with an empty body.
    Empty,
    /// The token endpoint issued tokens.
    Issued,
}

struct Row {
    name: String,
    path: &'static str,
    /// Authorization header values, in order (none, one, or several).
    auth: Vec<Vec<u8>>,
    content_type: Option<String>,
    body: Vec<u8>,
    /// Send the body chunked, without Content-Length (over a raw socket).
    chunked: bool,
    status: u16,
    expect: Expect,
}

struct Reply {
    status: u16,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    serde_urlencoded::to_string(pairs)
        .expect("form")
        .into_bytes()
}

/// Builds the table row by row.
struct Table {
    rows: Vec<Row>,
    gateway: Vec<u8>,
    inspector: Vec<u8>,
}

impl Table {
    fn push(
        &mut self,
        name: impl Into<String>,
        path: &'static str,
        auth: Vec<Vec<u8>>,
        body: Vec<u8>,
        status: u16,
        expect: Expect,
    ) {
        self.rows.push(Row {
            name: name.into(),
            path,
            auth,
            content_type: Some(FORM.into()),
            body,
            chunked: false,
            status,
            expect,
        });
    }

    /// A form to the token endpoint authenticated as `gateway`.
    fn token(&mut self, name: &str, pairs: &[(&str, &str)], status: u16, expect: Expect) {
        let auth = vec![self.gateway.clone()];
        self.push(name, TOKEN, auth, form(pairs), status, expect);
    }

    /// A raw body to the token endpoint authenticated as `gateway`.
    fn token_raw(&mut self, name: &str, body: impl Into<Vec<u8>>, status: u16, expect: Expect) {
        let auth = vec![self.gateway.clone()];
        self.push(name, TOKEN, auth, body.into(), status, expect);
    }

    /// A password grant for `username`/`password` as `gateway`.
    fn login(&mut self, name: &str, username: &str, password: &str, status: u16, expect: Expect) {
        self.token(
            name,
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
            status,
            expect,
        );
    }

    fn refresh(&mut self, name: &str, refresh_token: &str) {
        self.token(
            name,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
            400,
            Expect::Error("invalid_grant"),
        );
    }

    /// A token at the introspection endpoint, authenticated as `inspector`.
    fn introspect(&mut self, name: &str, token: &str, status: u16, expect: Expect) {
        let auth = vec![self.inspector.clone()];
        self.push(
            name,
            INTROSPECT,
            auth,
            form(&[("token", token)]),
            status,
            expect,
        );
    }

    /// A token endpoint request with its own Authorization headers and Content-Type.
    fn token_with(
        &mut self,
        name: &str,
        auth: Vec<Vec<u8>>,
        content_type: Option<&str>,
        body: impl Into<Vec<u8>>,
        status: u16,
        expect: Expect,
    ) {
        self.rows.push(Row {
            name: name.into(),
            path: TOKEN,
            auth,
            content_type: content_type.map(str::to_owned),
            body: body.into(),
            chunked: false,
            status,
            expect,
        });
    }
}

async fn send(app: &TestApp, row: &Row) -> Reply {
    if row.chunked {
        let (port, path) = (app.port, row.path);
        let (auth, content_type, body) =
            (row.auth.clone(), row.content_type.clone(), row.body.clone());
        return tokio::task::spawn_blocking(move || {
            send_chunked(port, path, &auth, content_type.as_deref(), &body)
        })
        .await
        .expect("raw request");
    }
    let mut req = app.http.post(app.url(row.path)).body(row.body.clone());
    if let Some(ct) = &row.content_type {
        req = req.header(CONTENT_TYPE, ct.as_str());
    }
    for value in &row.auth {
        req = req.header(
            AUTHORIZATION,
            HeaderValue::from_bytes(value).expect("header value"),
        );
    }
    let response = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: request failed: {e}", row.name));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = response.bytes().await.expect("body").to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// HTTP/1.1 over a plain socket with a chunked body of 64 KiB chunks: the server cannot know
/// the size in advance and must stop reading at its limit.
fn send_chunked(
    port: u16,
    path: &str,
    auth: &[Vec<u8>],
    content_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n").into_bytes();
    if let Some(ct) = content_type {
        head.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
    }
    for value in auth {
        head.extend_from_slice(b"Authorization: ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    stream.write_all(&head).expect("write head");
    // The server may answer and stop reading before the body is through: write errors are
    // expected then, and the answer is read regardless.
    for chunk in body.chunks(64 * 1024) {
        let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
        framed.extend_from_slice(chunk);
        framed.extend_from_slice(b"\r\n");
        if stream.write_all(&framed).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("reading the response: {e}"),
        }
        if let Some(reply) = parse_reply(&raw) {
            return reply;
        }
    }
    parse_reply(&raw)
        .unwrap_or_else(|| panic!("incomplete response: {:?}", String::from_utf8_lossy(&raw)))
}

/// A complete HTTP/1.1 response with a Content-Length body, or None when more is needed.
fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())?;
    let body = raw.get(end + 4..end + 4 + length)?.to_vec();
    Some(Reply {
        status,
        headers,
        body,
    })
}

/// Compares a reply with its row; returns what is wrong, if anything.
fn check(row: &Row, reply: &Reply) -> Option<String> {
    let text = String::from_utf8_lossy(&reply.body);
    let shown: String = text.chars().take(300).collect();
    let mut problems = Vec::new();
    if reply.status >= 500 {
        problems.push(format!("5xx answer {}", reply.status));
    }
    if reply.status != row.status {
        problems.push(format!("status {} (want {})", reply.status, row.status));
    }
    if reply.header("cache-control") != Some("no-store") {
        problems.push(format!("Cache-Control {:?}", reply.header("cache-control")));
    }
    let json: Option<Value> = serde_json::from_slice(&reply.body).ok();
    match row.expect {
        Expect::Error(code) => {
            let ok_shape = json.as_ref().is_some_and(|v| {
                v.as_object().is_some_and(|o| o.len() == 2)
                    && v["error"] == code
                    && v["error_description"].as_str().is_some()
            });
            if !ok_shape {
                problems.push(format!("want error {code}"));
            }
            let challenge = reply.header("www-authenticate");
            if row.status == 401 && challenge != Some(r#"Basic realm="tessera""#) {
                problems.push(format!("WWW-Authenticate {challenge:?}"));
            }
            if row.status != 401 && challenge.is_some() {
                problems.push("unexpected WWW-Authenticate".into());
            }
        }
        Expect::Inactive => {
            if json != Some(json!({ "active": false })) {
                problems.push("want exactly {\"active\":false}".into());
            }
        }
        Expect::Empty => {
            if !reply.body.is_empty() {
                problems.push("want an empty body".into());
            }
        }
        Expect::Issued => {
            if json
                .as_ref()
                .is_none_or(|v| v["access_token"].as_str().is_none())
            {
                problems.push("want an access token".into());
            }
        }
    }
    (!problems.is_empty()).then(|| {
        format!(
            "[{} {}] {}: {} -- body {shown}",
            row.path,
            row.status,
            row.name,
            problems.join("; ")
        )
    })
}

/// The claims a genuine access token for alice would carry.
fn alice_claims(now: i64, alice_id: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": alice_id,
        "aud": "tessera",
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "forged-jti",
        "client_id": "gateway",
        "scope": "read write",
        "preferred_username": "alice",
        "roles": ["admin"],
    })
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn at_header(alg: Algorithm, kid: &str) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    header
}

/// SubjectPublicKeyInfo PEM of a P-256 point (what a key-confusion attacker would use as the
/// HMAC secret).
fn p256_pem(point: &[u8]) -> String {
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(point);
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// Forged, foreign-key and tampered JWTs; each must introspect as inactive.
fn forged_tokens(now: i64, alice_id: &str, jwks: &Value, genuine: &str) -> Vec<(String, String)> {
    let our_kid = jsonwebtoken::decode_header(genuine)
        .expect("header")
        .kid
        .expect("kid");
    let our_jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == our_kid.as_str())
        .expect("active key in the JWKS")
        .clone();
    let good = alice_claims(now, alice_id);
    let payload = b64(&good);
    let mut out: Vec<(String, String)> = Vec::new();

    // alg: none, in several spellings, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(&json!({ "alg": alg, "typ": "at+jwt", "kid": our_kid }));
        out.push((
            format!("alg {alg}, empty signature"),
            format!("{header}.{payload}."),
        ));
    }
    let none_header = b64(&json!({ "alg": "none", "typ": "at+jwt", "kid": our_kid }));
    out.push((
        "alg none, no signature segment".into(),
        format!("{none_header}.{payload}"),
    ));
    let genuine_sig = genuine.rsplit('.').next().expect("signature");
    out.push((
        "alg none, genuine signature kept".into(),
        format!("{none_header}.{payload}.{genuine_sig}"),
    ));
    let genuine_payload = genuine.split('.').nth(1).expect("payload");
    out.push((
        "genuine payload re-headed as alg none".into(),
        format!("{none_header}.{genuine_payload}."),
    ));

    // HS256 keyed with public key material (algorithm confusion), with our kid.
    let point = {
        let x = URL_SAFE_NO_PAD
            .decode(our_jwk["x"].as_str().expect("x"))
            .expect("x b64");
        let y = URL_SAFE_NO_PAD
            .decode(our_jwk["y"].as_str().expect("y"))
            .expect("y b64");
        let mut p = vec![0x04];
        p.extend(x);
        p.extend(y);
        p
    };
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("the JWK JSON", our_jwk.to_string().into_bytes()),
        ("the JWKS document", jwks.to_string().into_bytes()),
        ("the raw EC point", point.clone()),
        (
            "the x coordinate text",
            our_jwk["x"].as_str().expect("x").as_bytes().to_vec(),
        ),
        ("the PEM public key", p256_pem(&point).into_bytes()),
    ];
    for (what, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &at_header(alg, &our_kid),
                &good,
                &EncodingKey::from_secret(secret),
            )
            .expect("hmac token");
            out.push((format!("{alg:?} keyed with {what}"), token));
        }
    }

    // A key that is not ours: unknown kid, our kid, and headers pointing at keys elsewhere.
    let foreign = keys::generate(KeyAlgorithm::ES256).expect("foreign key");
    let foreign_signer =
        JwtSigner::from_pkcs8(&foreign.kid, KeyAlgorithm::ES256, &foreign.pkcs8).expect("signer");
    out.push((
        "foreign key, foreign kid".into(),
        foreign_signer.sign(&good).expect("sign"),
    ));
    let impostor =
        JwtSigner::from_pkcs8(&our_kid, KeyAlgorithm::ES256, &foreign.pkcs8).expect("signer");
    out.push((
        "foreign key, our kid".into(),
        impostor.sign(&good).expect("sign"),
    ));
    let foreign_der = EncodingKey::from_ec_der(&foreign.pkcs8);
    let foreign_jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(foreign.public_jwk.clone()).expect("jwk");
    for kid in [foreign.kid.as_str(), our_kid.as_str()] {
        let mut h = at_header(Algorithm::ES256, kid);
        h.jku = Some("https://attacker.example/.well-known/jwks.json".into());
        out.push((
            format!("jku elsewhere, kid {kid}"),
            jsonwebtoken::encode(&h, &good, &foreign_der).expect("sign"),
        ));
        let mut h = at_header(Algorithm::ES256, kid);
        h.x5u = Some("https://attacker.example/cert.pem".into());
        out.push((
            format!("x5u elsewhere, kid {kid}"),
            jsonwebtoken::encode(&h, &good, &foreign_der).expect("sign"),
        ));
        let mut h = at_header(Algorithm::ES256, kid);
        h.jwk = Some(foreign_jwk.clone());
        out.push((
            format!("embedded jwk, kid {kid}"),
            jsonwebtoken::encode(&h, &good, &foreign_der).expect("sign"),
        ));
    }
    let mut h = at_header(Algorithm::ES256, &foreign.kid);
    h.kid = None;
    h.jwk = Some(foreign_jwk);
    out.push((
        "embedded jwk, no kid".into(),
        jsonwebtoken::encode(&h, &good, &foreign_der).expect("sign"),
    ));
    for kid in [
        "../../../../etc/passwd",
        "' OR '1'='1",
        "",
        "\u{0}",
        &"k".repeat(5000),
    ] {
        out.push((
            format!("hostile kid {:?}", kid.chars().take(24).collect::<String>()),
            jsonwebtoken::encode(&at_header(Algorithm::ES256, kid), &good, &foreign_der)
                .expect("sign"),
        ));
    }

    // Expired and not-yet-valid tokens from a key not in our JWKS.
    let mut expired = good.clone();
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut future = good.clone();
    future["iat"] = json!(now + 3600);
    future["nbf"] = json!(now + 3600);
    future["exp"] = json!(now + 7200);
    for (what, claims) in [("expired", &expired), ("nbf in the future", &future)] {
        out.push((
            format!("{what}, foreign key"),
            foreign_signer.sign(claims).expect("sign"),
        ));
        out.push((
            format!("{what}, foreign key with our kid"),
            impostor.sign(claims).expect("sign"),
        ));
    }

    // A genuine token, tampered.
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut payload_bytes = URL_SAFE_NO_PAD.decode(parts[1]).expect("payload");
    let at = payload_bytes
        .windows(7)
        .position(|w| w == b"\"alice\"")
        .expect("username in the payload");
    payload_bytes[at + 5] = b'f'; // "alice" -> "alicf": one byte
    out.push((
        "genuine token, one payload byte changed".into(),
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(&payload_bytes),
            parts[2]
        ),
    ));
    let mut escalated: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload")).expect("json");
    escalated["scope"] = json!("read write admin");
    escalated["exp"] = json!(now + 86_400 * 365);
    out.push((
        "genuine token, claims rewritten".into(),
        format!("{}.{}.{}", parts[0], b64(&escalated), parts[2]),
    ));
    let mut b64_tampered = parts[1].as_bytes().to_vec();
    let i = b64_tampered.len() / 2;
    b64_tampered[i] = if b64_tampered[i] == b'A' { b'B' } else { b'A' };
    out.push((
        "genuine token, one base64 character changed".into(),
        format!(
            "{}.{}.{}",
            parts[0],
            String::from_utf8(b64_tampered).expect("ascii"),
            parts[2]
        ),
    ));
    out.push((
        "genuine token, signature removed".into(),
        format!("{}.{}.", parts[0], parts[1]),
    ));
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
    sig[0] ^= 1;
    out.push((
        "genuine token, one signature bit flipped".into(),
        format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig)),
    ));
    let typ_jwt = b64(&json!({ "alg": "ES256", "typ": "JWT", "kid": our_kid }));
    out.push((
        "genuine payload and signature under another header".into(),
        format!("{typ_jwt}.{}.{}", parts[1], parts[2]),
    ));
    out.push((
        "genuine token with a fourth segment".into(),
        format!("{genuine}.{}", parts[2]),
    ));
    out.push((
        "genuine token doubled".into(),
        format!("{genuine}{genuine}"),
    ));
    out.push(("two dots".into(), "..".into()));
    out.push(("not a JWT".into(), "a.b.c".into()));
    out
}

async fn add_client(app: &TestApp, spec: ClientSpec) -> Client {
    let id = spec.client_id.clone();
    let (_, secret) = app.admin.add_client(spec).await.expect("client");
    Client {
        id,
        secret: secret.expect("confidential"),
    }
}

async fn setup(app: &TestApp) -> (Client, Client, Client) {
    let gateway = app.seed().await;
    app.admin
        .add_user("bob", PASSWORD, &[], false)
        .await
        .expect("bob");
    let other = app
        .add_client("other", &["password", "refresh_token"], &["read"])
        .await;
    let inspector = add_client(
        app,
        ClientSpec {
            client_id: "inspector".into(),
            name: "resource server".into(),
            grant_types: vec!["client_credentials".into()],
            introspect: true,
            ..ClientSpec::default()
        },
    )
    .await;
    (gateway, other, inspector)
}

async fn hostile_requests_get_exact_errors_and_never_5xx(backend: Backend) {
    let app = spawn_app(backend).await;
    let (gateway, other, inspector) = setup(&app).await;
    let billing = app
        .add_client("billing", &["client_credentials"], &["invoices"])
        .await;
    let session = app.login(&gateway).await;
    let access = session["access_token"].as_str().expect("access").to_owned();
    let refresh = session["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let others_refresh = app.login(&other).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let alice_id = app.admin.user("alice").await.expect("alice").id;
    let jwks = app.jwks().await;
    let now = app.clock.now();

    let gw = || vec![basic(&gateway.id, &gateway.secret).into_bytes()];
    let mut t = Table {
        rows: Vec::new(),
        gateway: gw().remove(0),
        inspector: basic(&inspector.id, &inspector.secret).into_bytes(),
    };
    let bad_grant = Expect::Error("invalid_grant");
    let bad_request = Expect::Error("invalid_request");
    let bad_client = Expect::Error("invalid_client");
    let bad_scope = Expect::Error("invalid_scope");
    let unsupported = Expect::Error("unsupported_grant_type");
    let pw = PASSWORD.replace(' ', "+");

    // --- SQL metacharacters ------------------------------------------------------------------
    for username in [
        "alice' OR '1'='1",
        "alice'--",
        "alice'/*",
        "' OR 1=1; --",
        "alice\"; DROP TABLE users; --",
        "alice'); DELETE FROM refresh_tokens; --",
        "%",
        "a_ice",
        "alic%",
        "alice\\",
    ] {
        // The right password: nothing may log in as alice by way of the username.
        t.login(
            &format!("username {username:?}"),
            username,
            PASSWORD,
            400,
            bad_grant,
        );
    }
    for password in ["' OR '1'='1", "x'); DROP TABLE users; --", "%", "\\'"] {
        t.login(
            &format!("bob, password {password:?}"),
            "bob",
            password,
            400,
            bad_grant,
        );
    }
    for id in [
        "gateway' OR '1'='1",
        "gateway'--",
        "%",
        "' UNION SELECT * FROM clients --",
    ] {
        let auth = vec![basic(id, &gateway.secret).into_bytes()];
        t.token_with(
            &format!("Basic client_id {id:?}"),
            auth,
            Some(FORM),
            form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
            ]),
            401,
            bad_client,
        );
        t.push(
            format!("body client_id {id:?} with secret"),
            TOKEN,
            vec![],
            form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", id),
                ("client_secret", &gateway.secret),
            ]),
            401,
            bad_client,
        );
        t.push(
            format!("body client_id {id:?} alone"),
            TOKEN,
            vec![],
            form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("client_id", id),
            ]),
            401,
            bad_client,
        );
    }
    for scope in [
        "read' OR '1'='1",
        "read;DROP TABLE clients",
        "read%",
        "read'--",
        "*",
    ] {
        t.token(
            &format!("scope {scope:?}"),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("scope", scope),
            ],
            400,
            bad_scope,
        );
    }
    for token in [
        "tsr_' OR '1'='1",
        "' OR 1=1 --",
        "tsr_%",
        "tsr_%' OR refresh_tokens.id IS NOT NULL --",
    ] {
        t.refresh(&format!("refresh_token {token:?}"), token);
    }

    // --- long and odd unicode usernames (with the right password) --------------------------
    let zalgo = format!("alice{}", "\u{0336}\u{0337}\u{0338}".repeat(20));
    let long_a = "a".repeat(10_000);
    for (what, username) in [
        ("10,000 characters", long_a.as_str()),
        ("256 characters", &"a".repeat(256)),
        ("RTL override", "\u{202E}ecila"),
        ("trailing RTL override", "alice\u{202E}"),
        ("zero-width joiner", "ali\u{200D}ce"),
        ("zero-width space", "alice\u{200B}"),
        ("byte order mark", "\u{FEFF}alice"),
        ("emoji ZWJ sequence", "👩\u{200D}💻🔑"),
        ("combining acute", "a\u{0301}lice"),
        ("zalgo", zalgo.as_str()),
        ("fullwidth", "ａｌｉｃｅ"),
        ("Turkish dotted capital I", "ALİCE"),
        ("Cyrillic a", "\u{0430}lice"),
        ("NEL", "alice\u{0085}"),
        ("newline", "alice\n"),
        ("leading space", " alice"),
        ("only spaces", "   "),
    ] {
        t.login(
            &format!("username: {what}"),
            username,
            PASSWORD,
            400,
            bad_grant,
        );
    }
    let long_e = "é".repeat(10_000);
    t.login(
        "username: 10,000 é (60 KB encoded)",
        &long_e,
        PASSWORD,
        413,
        bad_request,
    );
    t.login(
        "bob, 10,000-character password",
        "bob",
        &"p".repeat(10_000),
        400,
        bad_grant,
    );

    // --- NUL bytes ----------------------------------------------------------------------------
    t.token_raw(
        "username with %00",
        format!("grant_type=password&username=ali%00ce&password={pw}"),
        400,
        bad_request,
    );
    t.token_raw(
        "username ending in %00",
        format!("grant_type=password&username=alice%00&password={pw}"),
        400,
        bad_request,
    );
    t.token_raw(
        "password %00",
        "grant_type=password&username=alice&password=%00",
        400,
        bad_request,
    );
    t.token_raw(
        "password truncated by %00",
        format!("grant_type=password&username=alice&password={pw}%00junk"),
        400,
        bad_request,
    );
    t.token_raw(
        "scope with %00",
        format!("grant_type=password&username=alice&password={pw}&scope=read%00admin"),
        400,
        bad_request,
    );
    t.token_raw(
        "refresh_token with %00",
        "grant_type=refresh_token&refresh_token=tsr_%00abc",
        400,
        bad_request,
    );
    t.token_raw(
        "parameter name with %00",
        format!("grant_type%00=password&username=alice&password={pw}"),
        400,
        bad_request,
    );
    t.token_raw(
        "raw NUL byte",
        format!("grant_type=password&username=ali\0ce&password={pw}"),
        400,
        bad_request,
    );
    t.push(
        "body client_id with %00",
        TOKEN,
        vec![],
        format!(
            "grant_type=password&username=alice&password={pw}&client_id=gateway%00&client_secret={}",
            gateway.secret
        )
        .into_bytes(),
        400,
        bad_request,
    );

    // --- invalid UTF-8 ------------------------------------------------------------------------
    for (what, value) in [
        ("%FF%FE", "%FF%FE"),
        ("lone continuation", "%80"),
        ("truncated sequence", "%E2%9C"),
        ("bad continuation", "%C3%28"),
        ("overlong slash", "%C0%AF"),
        ("UTF-16 surrogate", "%ED%A0%80"),
        ("beyond U+10FFFF", "%F4%90%80%80"),
    ] {
        t.token_raw(
            &format!("username {what}"),
            format!("grant_type=password&username=alice{value}&password={pw}"),
            400,
            bad_request,
        );
    }
    t.token_raw(
        "password %FF",
        "grant_type=password&username=alice&password=%FF",
        400,
        bad_request,
    );
    t.token_raw(
        "parameter name %FF",
        format!("%FF=1&grant_type=password&username=alice&password={pw}"),
        400,
        bad_request,
    );
    let mut raw_ff = b"grant_type=password&username=alice\xff\xfe&password=".to_vec();
    raw_ff.extend_from_slice(pw.as_bytes());
    t.token_raw("raw 0xFF 0xFE bytes", raw_ff, 400, bad_request);

    // --- floods and sizes ---------------------------------------------------------------------
    let ten_thousand: String = (0..10_000).map(|i| format!("p{i}=1&")).collect();
    t.token_raw(
        "10,000 parameters",
        format!("grant_type=password&{ten_thousand}"),
        413,
        bad_request,
    );
    let sixty_five: String = (0..65).map(|i| format!("&{i}")).collect();
    t.token_raw(
        "65 parameters within the size limit",
        format!("grant_type=password&username=alice&password={pw}{sixty_five}"),
        400,
        bad_request,
    );
    let megabyte = format!(
        "grant_type=password&username=alice&password={}",
        "a".repeat(1 << 20)
    );
    t.token_raw("1 MB body", megabyte.clone(), 413, bad_request);
    t.token_raw("1 MB of '&'", "&".repeat(1 << 20), 413, bad_request);
    t.rows.push(Row {
        name: "1 MB chunked body without Content-Length".into(),
        path: TOKEN,
        auth: gw(),
        content_type: Some(FORM.into()),
        body: megabyte.into_bytes(),
        chunked: true,
        status: 413,
        expect: bad_request,
    });
    t.token_raw("10,000 '&'", "&".repeat(10_000), 400, bad_request);

    // --- structure and percent-encoding -------------------------------------------------------
    t.token_raw("only '&&&&'", "&&&&", 400, bad_request);
    t.token_raw("only '='", "=", 400, bad_request);
    t.token_raw("only '=='", "==", 400, bad_request);
    t.token_raw("'=password'", "=password", 400, bad_request);
    t.token_raw("empty body", "", 400, bad_request);
    t.token_raw("name without '='", "grant_type", 400, bad_request);
    t.token_raw(
        "encoded '=' in the name",
        "grant_type%3Dpassword",
        400,
        bad_request,
    );
    t.token_raw(
        "GRANT_TYPE upper case",
        format!("GRANT_TYPE=password&username=alice&password={pw}"),
        400,
        bad_request,
    );
    t.token_raw(
        "grant_type[]",
        format!("grant_type[]=password&username=alice&password={pw}"),
        400,
        bad_request,
    );
    t.token_raw(
        "'+grant_type' (leading space)",
        format!("+grant_type=password&username=alice&password={pw}"),
        400,
        bad_request,
    );
    t.token_raw(
        "repeated grant_type",
        format!("grant_type=password&grant_type=refresh_token&username=alice&password={pw}"),
        400,
        bad_request,
    );
    t.token_raw(
        "repeated password",
        format!("grant_type=password&username=alice&password=x&password={pw}"),
        400,
        bad_request,
    );
    // Malformed escapes are kept literally (WHATWG form decoding), so they name no grant or user.
    t.token_raw(
        "grant_type %G1",
        format!("grant_type=%G1&username=alice&password={pw}"),
        400,
        unsupported,
    );
    t.token_raw(
        "grant_type ending in a lone %",
        format!("grant_type=password%&username=alice&password={pw}"),
        400,
        unsupported,
    );
    t.token_raw(
        "grant_type lone %",
        format!("grant_type=%&username=alice&password={pw}"),
        400,
        unsupported,
    );
    t.token_raw(
        "grant_type 'pass%2'",
        format!("grant_type=pass%2&username=alice&password={pw}"),
        400,
        unsupported,
    );
    t.token_raw(
        "username %G1",
        format!("grant_type=password&username=%G1&password={pw}"),
        400,
        bad_grant,
    );
    t.token_raw(
        "username 'alice%'",
        format!("grant_type=password&username=alice%&password={pw}"),
        400,
        bad_grant,
    );
    t.token_raw(
        "smuggled '&' inside grant_type",
        format!("grant_type=password%26username%3Dalice&password={pw}"),
        400,
        unsupported,
    );
    t.token_raw(
        "';' as a separator",
        format!("grant_type=password;username=alice;password={pw}"),
        400,
        unsupported,
    );

    // --- grant types --------------------------------------------------------------------------
    t.token(
        "authorization_code with a redirect",
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", "https://attacker.example/"),
        ],
        400,
        unsupported,
    );
    t.token("implicit", &[("grant_type", "implicit")], 400, unsupported);
    t.token(
        "token exchange",
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", &access),
        ],
        400,
        unsupported,
    );
    t.token(
        "client_credentials for a user-grant client",
        &[("grant_type", "client_credentials")],
        400,
        Expect::Error("unauthorized_client"),
    );

    // --- refresh tokens that are not this client's to use ------------------------------------
    let not_ours = format!("tsr_{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    t.refresh("refresh_token that is not ours", &not_ours);
    t.refresh("client-secret prefix", &format!("tsc_{}", &refresh[4..]));
    t.refresh("no prefix", &refresh[4..]);
    t.refresh("upper-case prefix", &format!("TSR_{}", &refresh[4..]));
    t.refresh(
        "10 KB refresh_token",
        &format!("tsr_{}", "A".repeat(10_240)),
    );
    t.refresh("another client's refresh_token", &others_refresh);
    t.refresh("an access token as refresh_token", &access);
    t.refresh("genuine refresh_token plus a space", &format!("{refresh} "));
    t.refresh("genuine refresh_token, last character changed", &{
        let mut s = refresh.clone();
        let last = s.pop().expect("char");
        s.push(if last == 'A' { 'B' } else { 'A' });
        s
    });

    // --- client authentication ----------------------------------------------------------------
    let login_form = form(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ]);
    let header_rows: Vec<(&str, Vec<Vec<u8>>, u16, Expect)> = vec![
        (
            "Basic with a 3,000-character secret",
            vec![basic(&gateway.id, &"s".repeat(3000)).into_bytes()],
            401,
            bad_client,
        ),
        (
            "Authorization over 4 KiB",
            vec![format!("Basic {}", "QUFB".repeat(1100)).into_bytes()],
            401,
            bad_client,
        ),
        (
            "raw 0xFF in Authorization",
            vec![b"Basic \xff\xfe".to_vec()],
            401,
            bad_client,
        ),
        (
            "Bearer with a genuine access token",
            vec![format!("Bearer {access}").into_bytes()],
            401,
            bad_client,
        ),
        (
            "Basic, id with %00",
            vec![
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("gateway%00:{}", gateway.secret))
                )
                .into_bytes(),
            ],
            401,
            bad_client,
        ),
        (
            "Basic, id with %FF",
            vec![
                format!(
                    "Basic {}",
                    STANDARD.encode(format!("gateway%FF:{}", gateway.secret))
                )
                .into_bytes(),
            ],
            401,
            bad_client,
        ),
        (
            "Basic ':' only",
            vec![format!("Basic {}", STANDARD.encode(":")).into_bytes()],
            401,
            bad_client,
        ),
        (
            "Basic without credentials",
            vec![b"Basic".to_vec()],
            401,
            bad_client,
        ),
        (
            "two Authorization headers",
            vec![gw().remove(0), basic(&other.id, &other.secret).into_bytes()],
            400,
            bad_request,
        ),
        (
            "lower-case 'basic' scheme",
            vec![
                basic(&gateway.id, &gateway.secret)
                    .replacen("Basic", "basic", 1)
                    .into_bytes(),
            ],
            200,
            Expect::Issued,
        ),
    ];
    for (what, auth, status, expect) in header_rows {
        t.token_with(what, auth, Some(FORM), login_form.clone(), status, expect);
    }
    t.token(
        "Basic and client_secret in the body",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_secret", &gateway.secret),
        ],
        400,
        bad_request,
    );
    t.token(
        "Basic and another client_id in the body",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("client_id", &other.id),
        ],
        400,
        bad_request,
    );
    t.token_with(
        "no client authentication",
        vec![],
        Some(FORM),
        login_form.clone(),
        401,
        bad_client,
    );
    t.token_with(
        "password grant by a client_credentials-only client",
        vec![basic(&billing.id, &billing.secret).into_bytes()],
        Some(FORM),
        login_form.clone(),
        400,
        Expect::Error("unauthorized_client"),
    );

    // --- content types ------------------------------------------------------------------------
    let json_body =
        json!({"grant_type": "password", "username": "alice", "password": PASSWORD}).to_string();
    let xxe =
        r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
    for (ct, body) in [
        (Some("application/json"), json_body.into_bytes()),
        (Some("text/xml"), xxe.as_bytes().to_vec()),
        (Some("multipart/form-data; boundary=b"), b"--b\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\npassword\r\n--b--\r\n".to_vec()),
        (None, login_form.clone()),
        (Some("application/x-www-form-urlencoded; charset=latin1"), login_form.clone()),
        (Some("application/x-www-form-urlencoded, application/json"), login_form.clone()),
    ] {
        t.token_with(&format!("Content-Type {ct:?}"), gw(), ct, body, 400, bad_request);
    }

    // --- revocation ---------------------------------------------------------------------------
    let g = gw();
    t.push(
        "revoke without client authentication",
        REVOKE,
        vec![],
        form(&[("token", "x")]),
        401,
        bad_client,
    );
    t.push(
        "revoke with a wrong secret",
        REVOKE,
        vec![basic(&gateway.id, "tsc_wrong").into_bytes()],
        form(&[("token", "x")]),
        401,
        bad_client,
    );
    t.push(
        "revoke with a Bearer token",
        REVOKE,
        vec![format!("Bearer {access}").into_bytes()],
        form(&[("token", &access)]),
        401,
        bad_client,
    );
    t.push(
        "revoke without a token",
        REVOKE,
        g.clone(),
        form(&[("token_type_hint", "refresh_token")]),
        400,
        bad_request,
    );
    t.push(
        "revoke an unknown token",
        REVOKE,
        g.clone(),
        form(&[("token", "garbage")]),
        200,
        Expect::Empty,
    );
    t.push(
        "revoke SQL",
        REVOKE,
        g.clone(),
        form(&[("token", "tsr_' OR '1'='1")]),
        200,
        Expect::Empty,
    );
    t.push(
        "revoke another client's refresh token",
        REVOKE,
        g.clone(),
        form(&[("token", &others_refresh)]),
        200,
        Expect::Empty,
    );
    t.push(
        "revoke a token with %00",
        REVOKE,
        g.clone(),
        b"token=tsr_%00".to_vec(),
        400,
        bad_request,
    );
    t.push(
        "revoke with invalid UTF-8",
        REVOKE,
        g.clone(),
        b"token=%FF".to_vec(),
        400,
        bad_request,
    );
    t.push(
        "revoke a 1 MB body",
        REVOKE,
        g.clone(),
        format!("token={}", "a".repeat(1 << 20)).into_bytes(),
        413,
        bad_request,
    );

    // --- introspection ------------------------------------------------------------------------
    t.push(
        "introspect without client authentication",
        INTROSPECT,
        vec![],
        form(&[("token", &access)]),
        401,
        bad_client,
    );
    t.push(
        "introspect as a client without the permission",
        INTROSPECT,
        g.clone(),
        form(&[("token", &access)]),
        403,
        Expect::Error("unauthorized_client"),
    );
    t.push(
        "introspect without a token",
        INTROSPECT,
        vec![t.inspector.clone()],
        Vec::new(),
        400,
        bad_request,
    );
    t.push(
        "introspect with %00",
        INTROSPECT,
        vec![t.inspector.clone()],
        b"token=a%00b".to_vec(),
        400,
        bad_request,
    );
    t.push(
        "introspect a 1 MB body",
        INTROSPECT,
        vec![t.inspector.clone()],
        format!("token={}", "a".repeat(1 << 20)).into_bytes(),
        413,
        bad_request,
    );
    for (what, token) in [
        ("garbage", "garbage".to_owned()),
        ("SQL", "' OR 1=1 --".to_owned()),
        ("prefixed SQL", "tsr_' OR '1'='1".to_owned()),
        ("10 KB token", "e".repeat(10_240)),
        (
            "10 KB prefixed token",
            format!("tsr_{}", "A".repeat(10_240)),
        ),
        ("another refresh token that is not ours", not_ours.clone()),
    ] {
        t.introspect(&format!("introspect {what}"), &token, 200, Expect::Inactive);
    }
    for (what, token) in forged_tokens(now, &alice_id, &jwks, &access) {
        t.introspect(
            &format!("introspect JWT: {what}"),
            &token,
            200,
            Expect::Inactive,
        );
    }

    assert!(t.rows.len() >= 60, "only {} rows", t.rows.len());
    let mut failures = Vec::new();
    for row in &t.rows {
        let reply = send(&app, row).await;
        if let Some(problem) = check(row, &reply) {
            failures.push(problem);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        t.rows.len(),
        failures.join("\n")
    );

    // Afterwards the server is healthy, alice can log in, and her first token is untouched.
    let health = app
        .http
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let again = app.login(&gateway).await;
    app.verify(again["access_token"].as_str().expect("access"), "tessera")
        .await;
    let answer = introspect(&app, &inspector, &access).await;
    assert_eq!(answer["active"], true, "{answer}");
    let refreshed = app.refresh(&gateway, &refresh).await;
    assert_eq!(refreshed.status(), 200, "alice's refresh token still works");
    let all = tessera::store::Page {
        after: None,
        limit: 1000,
    };
    assert_eq!(
        app.admin.list_users(&all, None).await.expect("users").len(),
        2
    );
    assert_eq!(
        app.admin.list_clients(&all).await.expect("clients").len(),
        4
    );
}

async fn introspect(app: &TestApp, client: &Client, token: &str) -> Value {
    let response = app
        .post_form(INTROSPECT, Some(client), &[("token", token)])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.expect("json")
}

async fn genuine_tokens_introspect_with_every_member(backend: Backend) {
    let app = spawn_app(backend).await;
    let (gateway, other, inspector) = setup(&app).await;
    let session = app.login(&gateway).await;
    let access = session["access_token"].as_str().expect("access");
    let refresh = session["refresh_token"].as_str().expect("refresh");
    let alice = app.admin.user("alice").await.expect("alice");
    let issued = claims(access);

    let answer = introspect(&app, &inspector, access).await;
    let expected = json!({
        "active": true,
        "scope": "read write",
        "client_id": "gateway",
        "username": "alice",
        "token_type": "Bearer",
        "exp": issued["exp"],
        "iat": issued["iat"],
        "nbf": issued["nbf"],
        "sub": alice.id,
        "aud": "tessera",
        "iss": ISSUER,
        "jti": issued["jti"],
    });
    assert_eq!(answer, expected);
    assert_eq!(
        answer["exp"].as_i64().expect("exp") - answer["iat"].as_i64().expect("iat"),
        600
    );

    // client_secret_post works at the introspection endpoint too.
    let response = app
        .post_form(
            INTROSPECT,
            None,
            &[
                ("token", access),
                ("client_id", &inspector.id),
                ("client_secret", &inspector.secret),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("json"), expected);

    let answer = introspect(&app, &inspector, refresh).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "refresh_token");
    assert_eq!(answer["scope"], "read write");
    assert_eq!(answer["client_id"], "gateway");
    assert_eq!(answer["username"], "alice");
    assert_eq!(answer["sub"], alice.id.as_str());
    assert_eq!(answer["iss"], ISSUER);
    assert!(answer["exp"].as_i64().expect("exp") > answer["iat"].as_i64().expect("iat"));

    // A client cannot revoke another client's tokens; the owner can.
    let revoke = |client: Client, token: String| {
        let app = &app;
        async move {
            let response = app
                .post_form(REVOKE, Some(&client), &[("token", &token)])
                .await;
            assert_eq!(response.status(), 200);
        }
    };
    revoke(other.clone(), access.to_owned()).await;
    revoke(other.clone(), refresh.to_owned()).await;
    assert_eq!(introspect(&app, &inspector, access).await["active"], true);
    assert_eq!(introspect(&app, &inspector, refresh).await["active"], true);
    revoke(gateway.clone(), access.to_owned()).await;
    assert_eq!(
        introspect(&app, &inspector, access).await,
        json!({"active": false})
    );
    revoke(gateway.clone(), refresh.to_owned()).await;
    assert_eq!(
        introspect(&app, &inspector, refresh).await,
        json!({"active": false})
    );

    // Our own token, once expired, is inactive too.
    let fresh = app.login(&gateway).await;
    let fresh_access = fresh["access_token"].as_str().expect("access");
    assert_eq!(
        introspect(&app, &inspector, fresh_access).await["active"],
        true
    );
    app.clock.advance(601);
    assert_eq!(
        introspect(&app, &inspector, fresh_access).await,
        json!({"active": false})
    );
}

both_backends!(
    hostile_requests_get_exact_errors_and_never_5xx,
    genuine_tokens_introspect_with_every_member,
);
