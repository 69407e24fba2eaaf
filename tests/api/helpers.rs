//! `spawn_app`: the real server on a random port over a fresh database, with a clock the test
//! can move, and typed helpers for each endpoint.
#![allow(dead_code)]

use std::sync::{Arc, Once};

use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use tessera::admin::{Admin, ClientSpec};
use tessera::clock::ShiftedClock;
use tessera::config::Settings;
use tessera::crypto::keys::Kek;
use tessera::startup::Application;

pub use crate::common::http::{Client, access_token_of, basic, claims, kid_of, refresh_token_of};
use crate::common::server::{overlay, run_cli};
pub use crate::common::{Backend, TestDb};

pub const ISSUER: &str = "http://tessera.test";
pub const PASSWORD: &str = "correct horse battery staple";

static TRACING: Once = Once::new();

/// Quiet unless TEST_LOG is set.
fn init_logs() {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            let _ = tessera::telemetry::init("debug", tessera::config::LogFormat::Pretty, None);
        }
    });
}

/// Settings for a test: its own database, port 0, cheap argon2 (real parameters are measured in
/// the benchmark, not here), a fresh key-encryption key.
pub fn test_settings(db: &TestDb) -> Settings {
    let env: Vec<(String, String)> = vec![
        ("TESSERA__SERVER__BIND".into(), "127.0.0.1:0".into()),
        ("TESSERA__SERVER__ISSUER".into(), ISSUER.into()),
        ("TESSERA__SERVER__WORKERS".into(), "2".into()),
        ("TESSERA__METRICS__BIND".into(), "127.0.0.1:0".into()),
        ("TESSERA__DATABASE__URL".into(), db.url.clone()),
        ("TESSERA__DATABASE__MAX_CONNECTIONS".into(), "8".into()),
        (
            "TESSERA__PASSWORDS__ARGON2_MEMORY_KIB".into(),
            "1024".into(),
        ),
        ("TESSERA__PASSWORDS__ARGON2_ITERATIONS".into(), "1".into()),
        (
            "TESSERA__KEYS__ENCRYPTION_KEY".into(),
            Kek::generate_base64(),
        ),
    ];
    Settings::load_from(None, &env).expect("test settings")
}

pub struct TestApp {
    pub address: String,
    pub port: u16,
    /// The metrics listener's port; `None` with `metrics.bind = "main"`.
    pub metrics_port: Option<u16>,
    pub db: TestDb,
    pub clock: Arc<ShiftedClock>,
    pub http: reqwest::Client,
    pub admin: Admin,
    pub settings: Settings,
    pub handle: actix_web::dev::ServerHandle,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDb::new(backend).await;
    let mut settings = test_settings(&db);
    tweak(&mut settings);
    spawn_on(db, settings).await
}

/// Starts a server on an existing database (a second instance, a restart).
pub async fn spawn_on(db: TestDb, settings: Settings) -> TestApp {
    init_logs();
    let clock = ShiftedClock::new();
    let app = Application::build(settings.clone(), clock.clone())
        .await
        .expect("app builds");
    let port = app.port();
    let metrics_port = app.metrics_port();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let store = tessera::startup::open_store(&settings)
        .await
        .expect("store");
    let admin =
        Admin::new(store, clock.clone(), settings.clone(), "cli:test".into()).expect("admin");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        metrics_port,
        db,
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        admin,
        settings,
        handle,
    }
}

/// Runs one SQL statement on the app's database behind its back (a row an older version wrote).
pub async fn execute(app: &TestApp, sql: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url)
        .await
        .expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Runs the `tessera` binary (another process, as an operator would) on this server's
    /// database; returns whether it succeeded, and its stdout and stderr.
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut env = Vec::new();
        overlay(
            &mut env,
            &[
                ("TESSERA__DATABASE__URL", &self.db.url),
                (
                    "TESSERA__KEYS__ENCRYPTION_KEY",
                    self.settings.keys.encryption_key.expose(),
                ),
                ("TESSERA__SERVER__ISSUER", ISSUER),
                ("TESSERA__LOG__LEVEL", "warn"),
            ],
        );
        let dir = self.db.path();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let output = tokio::task::spawn_blocking(move || run_cli(&dir, &env, &args, None, &[]))
            .await
            .expect("join");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// The audit rows of one action, newest first.
    pub async fn audit_rows(&self, action: &str) -> Vec<tessera::store::AuditRow> {
        self.admin
            .store
            .audit_query(&tessera::store::AuditFilter {
                action: Some(action.into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("audit")
    }

    /// `/metrics` where this server serves it.
    pub fn metrics_url(&self) -> String {
        match self.metrics_port {
            Some(port) => format!("http://127.0.0.1:{port}/metrics"),
            None => self.url("/metrics"),
        }
    }

    /// A role, a user `alice` holding it, and a client `gateway` with every user grant.
    pub async fn seed(&self) -> Client {
        self.admin
            .add_role("admin", "Administrators")
            .await
            .expect("role");
        self.admin
            .add_user("alice", PASSWORD, &["admin".into()], false)
            .await
            .expect("user");
        self.add_client(
            "gateway",
            &["password", "refresh_token"],
            &["read", "write"],
        )
        .await
    }

    pub async fn add_client(&self, id: &str, grants: &[&str], scopes: &[&str]) -> Client {
        let spec = ClientSpec {
            client_id: id.into(),
            name: id.into(),
            grant_types: grants.iter().map(|s| s.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..ClientSpec::default()
        };
        let (_, secret) = self.admin.add_client(spec).await.expect("client");
        Client {
            id: id.into(),
            secret: secret.expect("confidential"),
        }
    }

    /// POSTs a form to the token endpoint with optional Basic credentials.
    pub async fn token(&self, client: Option<&Client>, form: &[(&str, &str)]) -> reqwest::Response {
        self.post_form("/oauth/token", client, form).await
    }

    pub async fn post_form(
        &self,
        path: &str,
        client: Option<&Client>,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.http.post(self.url(path)).form(form);
        if let Some(c) = client {
            req = req.header("Authorization", basic(&c.id, &c.secret));
        }
        req.send().await.expect("request")
    }

    pub async fn password_grant(
        &self,
        client: &Client,
        username: &str,
        password: &str,
    ) -> reqwest::Response {
        self.token(
            Some(client),
            &[
                ("grant_type", "password"),
                ("username", username),
                ("password", password),
            ],
        )
        .await
    }

    pub async fn refresh(&self, client: &Client, refresh_token: &str) -> reqwest::Response {
        self.token(
            Some(client),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// Logs alice in and returns the token response.
    pub async fn login(&self, client: &Client) -> Value {
        let response = self.password_grant(client, "alice", PASSWORD).await;
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    /// GETs `path`; the request must get an answer.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn jwks(&self) -> Value {
        self.get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .expect("json")
    }

    /// Verifies an access token the way an independent resource server would: fetch the JWKS,
    /// pick the key by `kid`, take the algorithm from the key (never the token), check `typ`,
    /// issuer, audience and expiry (RFC 9068 §4).
    pub async fn verify(&self, token: &str, audience: &str) -> Value {
        let jwks = self.jwks().await;
        verify_with_jwks(token, &jwks, audience).expect("token verifies against the JWKS")
    }
}

pub fn verify_with_jwks(token: &str, jwks: &Value, audience: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    if header.typ.as_deref() != Some("at+jwt") {
        return Err(format!("typ is {:?}", header.typ));
    }
    let kid = header.kid.ok_or("no kid")?;
    let keys = jwks["keys"].as_array().ok_or("no keys")?;
    let jwk_value = keys
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .ok_or("unknown kid")?;
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(jwk_value.clone()).map_err(|e| e.to_string())?;
    let alg: jsonwebtoken::Algorithm = jwk_value["alg"]
        .as_str()
        .ok_or("no alg")?
        .parse()
        .map_err(|_| "bad alg")?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[audience]);
    validation.leeway = 0;
    let data =
        jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| e.to_string())?;
    Ok(data.claims)
}
