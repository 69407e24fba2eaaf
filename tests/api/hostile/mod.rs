//! Hostile input: tables of malformed and malicious requests against the token, revocation
//! and introspection endpoints, one table per kind of input, each row with the exact status
//! and error code it must get. No row may ever produce a 5xx, and the server must serve
//! normally afterwards. Also: forged, tampered and foreign-key JWTs at the introspection
//! endpoint are `{"active": false}`, and genuine tokens introspect with every RFC 7662 §2.2
//! member.

mod endpoints;
mod forged;
mod forms;
mod genuine;
mod wire;

use serde_json::{Value, json};
use tessera::admin::ClientSpec;
use tessera::clock::Clock;

use crate::both_backends;
use crate::helpers::{Backend, Client, PASSWORD, TestApp, basic, spawn_app};
use crate::lifecycle::introspect;
use genuine::genuine_tokens_introspect_with_every_member;
use wire::{Reply, send};

const FORM: &str = "application/x-www-form-urlencoded";
const TOKEN: &str = "/oauth/token";
const REVOKE: &str = "/oauth/revoke";
const INTROSPECT: &str = "/oauth/introspect";

const BAD_GRANT: Expect = Expect::Error("invalid_grant");
const BAD_REQUEST: Expect = Expect::Error("invalid_request");
const BAD_CLIENT: Expect = Expect::Error("invalid_client");
const BAD_SCOPE: Expect = Expect::Error("invalid_scope");
const UNSUPPORTED: Expect = Expect::Error("unsupported_grant_type");

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

/// What every table starts from: a server with alice and bob, the clients `gateway`, `other`,
/// `inspector` (may introspect) and `billing` (client_credentials only), a session of alice's
/// at `gateway` and one at `other`.
struct Ctx {
    app: TestApp,
    gateway: Client,
    other: Client,
    inspector: Client,
    billing: Client,
    /// alice's session at `gateway`.
    access: String,
    refresh: String,
    /// alice's refresh token at `other`.
    others_refresh: String,
    alice_id: String,
    jwks: Value,
    now: i64,
    /// PASSWORD as it stands in a form body.
    pw: String,
}

impl Ctx {
    async fn new(backend: Backend) -> Ctx {
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
        Ctx {
            app,
            gateway,
            other,
            inspector,
            billing,
            access,
            refresh,
            others_refresh,
            alice_id,
            jwks,
            now,
            pw: PASSWORD.replace(' ', "+"),
        }
    }

    /// `gateway`'s Basic credentials as the only Authorization header.
    fn gw(&self) -> Vec<Vec<u8>> {
        vec![basic(&self.gateway.id, &self.gateway.secret).into_bytes()]
    }

    fn table(&self) -> Table {
        Table {
            rows: Vec::new(),
            gateway: self.gw().remove(0),
            inspector: basic(&self.inspector.id, &self.inspector.secret).into_bytes(),
        }
    }

    /// Sends every row and compares each answer with its row; afterwards the server is
    /// healthy, alice can log in, and her first token is untouched.
    async fn run(&self, t: &Table) {
        let (app, gateway) = (&self.app, &self.gateway);
        let mut failures = Vec::new();
        for row in &t.rows {
            let reply = send(app, row).await;
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

        let health = app.get("/healthz").await;
        assert_eq!(health.status(), 200);
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200);
        let again = app.login(gateway).await;
        app.verify(again["access_token"].as_str().expect("access"), "tessera")
            .await;
        let answer = introspect(app, &self.inspector, &self.access).await;
        assert_eq!(answer["active"], true, "{answer}");
        let refreshed = app.refresh(gateway, &self.refresh).await;
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
}

type Group = fn(&Ctx, &mut Table);

/// Every table, in the order they were once one.
const GROUPS: [Group; 13] = [
    forms::sql_metacharacters,
    forms::unicode_usernames,
    forms::nul_bytes,
    forms::invalid_utf8,
    forms::floods_and_sizes,
    forms::structure_and_percent_encoding,
    endpoints::grant_types,
    endpoints::refresh_tokens_not_ours,
    endpoints::client_authentication,
    endpoints::content_types,
    endpoints::revocation,
    endpoints::introspection,
    endpoints::forged_jwts,
];

/// A fresh server, the rows of `group` sent to it, then the checks of [`Ctx::run`].
async fn hostile(backend: Backend, group: Group) {
    let ctx = Ctx::new(backend).await;
    let mut t = ctx.table();
    group(&ctx, &mut t);
    assert!(!t.rows.is_empty(), "an empty table");
    ctx.run(&t).await;
}

/// The tables together keep their breadth: at least 60 rows.
async fn the_tables_hold_at_least_60_rows(backend: Backend) {
    let ctx = Ctx::new(backend).await;
    let mut t = ctx.table();
    for group in GROUPS {
        group(&ctx, &mut t);
    }
    assert!(t.rows.len() >= 60, "only {} rows", t.rows.len());
}

async fn sql_metacharacters_are_data(backend: Backend) {
    hostile(backend, forms::sql_metacharacters).await;
}

async fn odd_unicode_usernames_match_no_one(backend: Backend) {
    hostile(backend, forms::unicode_usernames).await;
}

async fn nul_bytes_are_malformed(backend: Backend) {
    hostile(backend, forms::nul_bytes).await;
}

async fn invalid_utf8_is_malformed(backend: Backend) {
    hostile(backend, forms::invalid_utf8).await;
}

async fn floods_and_oversized_bodies_are_refused(backend: Backend) {
    hostile(backend, forms::floods_and_sizes).await;
}

async fn malformed_forms_are_refused(backend: Backend) {
    hostile(backend, forms::structure_and_percent_encoding).await;
}

async fn unsupported_grant_types_are_refused(backend: Backend) {
    hostile(backend, endpoints::grant_types).await;
}

async fn refresh_tokens_not_ours_are_invalid_grant(backend: Backend) {
    hostile(backend, endpoints::refresh_tokens_not_ours).await;
}

async fn broken_client_authentication_is_refused(backend: Backend) {
    hostile(backend, endpoints::client_authentication).await;
}

async fn wrong_content_types_are_refused(backend: Backend) {
    hostile(backend, endpoints::content_types).await;
}

async fn hostile_revocation_requests_are_refused_or_ignored(backend: Backend) {
    hostile(backend, endpoints::revocation).await;
}

async fn hostile_introspection_requests_are_refused_or_inactive(backend: Backend) {
    hostile(backend, endpoints::introspection).await;
}

async fn forged_jwts_introspect_as_inactive(backend: Backend) {
    hostile(backend, endpoints::forged_jwts).await;
}

both_backends!(
    the_tables_hold_at_least_60_rows,
    sql_metacharacters_are_data,
    odd_unicode_usernames_match_no_one,
    nul_bytes_are_malformed,
    invalid_utf8_is_malformed,
    floods_and_oversized_bodies_are_refused,
    malformed_forms_are_refused,
    unsupported_grant_types_are_refused,
    refresh_tokens_not_ours_are_invalid_grant,
    broken_client_authentication_is_refused,
    wrong_content_types_are_refused,
    hostile_revocation_requests_are_refused_or_ignored,
    hostile_introspection_requests_are_refused_or_inactive,
    forged_jwts_introspect_as_inactive,
    genuine_tokens_introspect_with_every_member,
);
