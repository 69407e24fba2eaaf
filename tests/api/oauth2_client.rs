//! The `oauth2` crate (with its reqwest client) as a third-party client of Tessera's token
//! endpoint: password, refresh and client_credentials, with `client_secret_basic`.

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse, BasicTokenType};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, RefreshToken, RequestTokenError,
    ResourceOwnerPassword, ResourceOwnerUsername, Scope, TokenResponse, TokenUrl,
};

use crate::both_backends;
use crate::helpers::{Backend, Client, PASSWORD, TestApp, claims, spawn_app};

type Oauth2Client =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn oauth2_client(app: &TestApp, client: &Client) -> Oauth2Client {
    BasicClient::new(ClientId::new(client.id.clone()))
        .set_client_secret(ClientSecret::new(client.secret.clone()))
        .set_auth_type(AuthType::BasicAuth)
        .set_token_uri(TokenUrl::new(app.url("/oauth/token")).expect("token url"))
}

fn http() -> reqwest::Client {
    // No redirects: the oauth2 crate's advice against SSRF through token endpoints.
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

fn scopes(token: &BasicTokenResponse) -> Vec<String> {
    token
        .scopes()
        .map(|s| s.iter().map(|s| s.to_string()).collect())
        .unwrap_or_default()
}

/// The crate's typed error code, or a panic naming what came back instead.
fn error_code<RE: std::error::Error + 'static>(
    result: Result<BasicTokenResponse, RequestTokenError<RE, oauth2::basic::BasicErrorResponse>>,
) -> BasicErrorResponseType {
    match result {
        Ok(token) => panic!(
            "expected an error, got a token with scopes {:?}",
            scopes(&token)
        ),
        Err(RequestTokenError::ServerResponse(body)) => body.error().clone(),
        Err(other) => panic!("expected an OAuth error response, got {other:?}"),
    }
}

async fn password_then_refresh_rotates(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    let client = oauth2_client(&app, &gateway);
    let http = http();
    let username = ResourceOwnerUsername::new("alice".into());
    let password = ResourceOwnerPassword::new(PASSWORD.into());

    let first = client
        .exchange_password(&username, &password)
        .add_scope(Scope::new("read".into()))
        .request_async(&http)
        .await
        .expect("password grant");
    assert_eq!(*first.token_type(), BasicTokenType::Bearer);
    assert_eq!(first.expires_in(), Some(Duration::from_secs(600)));
    assert_eq!(scopes(&first), ["read"]);
    let access = first.access_token().secret();
    let verified = app.verify(access, "tessera").await;
    assert_eq!(verified["preferred_username"], "alice");
    assert_eq!(verified["client_id"], "gateway");
    assert_eq!(verified["scope"], "read");
    assert_eq!(verified["roles"], serde_json::json!(["admin"]));
    let first_refresh = first.refresh_token().expect("a refresh token").clone();
    assert!(first_refresh.secret().starts_with("tsr_"));

    // Refresh: a new access token and a new refresh token; the old one is spent.
    let second = client
        .exchange_refresh_token(&first_refresh)
        .request_async(&http)
        .await
        .expect("refresh grant");
    assert_eq!(scopes(&second), ["read"]);
    let second_refresh = second
        .refresh_token()
        .expect("a rotated refresh token")
        .clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    assert_ne!(second.access_token().secret(), access);
    let second_claims = app.verify(second.access_token().secret(), "tessera").await;
    assert_eq!(second_claims["sub"], verified["sub"]);

    // Presenting the rotated token again is reuse: invalid_grant, and the family is revoked,
    // so the token it was rotated into stops working too.
    let reused = client
        .exchange_refresh_token(&first_refresh)
        .request_async(&http)
        .await;
    assert_eq!(error_code(reused), BasicErrorResponseType::InvalidGrant);
    let after_reuse = client
        .exchange_refresh_token(&second_refresh)
        .request_async(&http)
        .await;
    assert_eq!(
        error_code(after_reuse),
        BasicErrorResponseType::InvalidGrant
    );

    // A made-up refresh token is invalid_grant as well.
    let unknown = RefreshToken::new("tsr_not-a-real-token".into());
    let result = client
        .exchange_refresh_token(&unknown)
        .request_async(&http)
        .await;
    assert_eq!(error_code(result), BasicErrorResponseType::InvalidGrant);
}

async fn refresh_can_narrow_the_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    let client = oauth2_client(&app, &gateway);
    let http = http();
    let both = client
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new(PASSWORD.into()),
        )
        .add_scope(Scope::new("read".into()))
        .add_scope(Scope::new("write".into()))
        .request_async(&http)
        .await
        .expect("password grant");
    assert_eq!(scopes(&both), ["read", "write"]);
    let narrowed = client
        .exchange_refresh_token(both.refresh_token().expect("refresh token"))
        .add_scope(Scope::new("write".into()))
        .request_async(&http)
        .await
        .expect("narrowing refresh");
    assert_eq!(scopes(&narrowed), ["write"]);
    assert_eq!(claims(narrowed.access_token().secret())["scope"], "write");
    // Widening beyond the original grant is refused.
    let widened = client
        .exchange_refresh_token(narrowed.refresh_token().expect("refresh token"))
        .add_scope(Scope::new("admin".into()))
        .request_async(&http)
        .await;
    assert_eq!(error_code(widened), BasicErrorResponseType::InvalidScope);
}

async fn password_errors_surface_as_typed_codes(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    let http = http();
    let username = ResourceOwnerUsername::new("alice".into());

    let wrong_password = oauth2_client(&app, &gateway)
        .exchange_password(&username, &ResourceOwnerPassword::new("wrong".into()))
        .request_async(&http)
        .await;
    assert_eq!(
        error_code(wrong_password),
        BasicErrorResponseType::InvalidGrant
    );

    let nobody = oauth2_client(&app, &gateway)
        .exchange_password(
            &ResourceOwnerUsername::new("nobody".into()),
            &ResourceOwnerPassword::new(PASSWORD.into()),
        )
        .request_async(&http)
        .await;
    assert_eq!(error_code(nobody), BasicErrorResponseType::InvalidGrant);

    let impostor = Client {
        id: gateway.id.clone(),
        secret: "tsc_wrong".into(),
    };
    let bad_secret = oauth2_client(&app, &impostor)
        .exchange_password(&username, &ResourceOwnerPassword::new(PASSWORD.into()))
        .request_async(&http)
        .await;
    assert_eq!(
        error_code(bad_secret),
        BasicErrorResponseType::InvalidClient
    );

    let bad_scope = oauth2_client(&app, &gateway)
        .exchange_password(&username, &ResourceOwnerPassword::new(PASSWORD.into()))
        .add_scope(Scope::new("admin".into()))
        .request_async(&http)
        .await;
    assert_eq!(error_code(bad_scope), BasicErrorResponseType::InvalidScope);

    // The gateway is not registered for client_credentials.
    let not_allowed = oauth2_client(&app, &gateway)
        .exchange_client_credentials()
        .request_async(&http)
        .await;
    assert_eq!(
        error_code(not_allowed),
        BasicErrorResponseType::UnauthorizedClient
    );
}

async fn client_credentials_for_a_service(backend: Backend) {
    let app = spawn_app(backend).await;
    let service = app
        .add_client("svc", &["client_credentials"], &["jobs", "reports"])
        .await;
    let client = oauth2_client(&app, &service);
    let http = http();

    let token = client
        .exchange_client_credentials()
        .add_scope(Scope::new("jobs".into()))
        .request_async(&http)
        .await
        .expect("client_credentials grant");
    assert_eq!(*token.token_type(), BasicTokenType::Bearer);
    assert_eq!(scopes(&token), ["jobs"]);
    assert!(
        token.refresh_token().is_none(),
        "no refresh token for client_credentials (RFC 6749 §4.4.3)"
    );
    let verified = app.verify(token.access_token().secret(), "tessera").await;
    assert_eq!(verified["sub"], "svc");
    assert_eq!(verified["client_id"], "svc");
    assert!(verified.get("preferred_username").is_none());

    // No scope asked: every scope the client may use.
    let all = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .expect("client_credentials grant");
    let mut granted = scopes(&all);
    granted.sort();
    assert_eq!(granted, ["jobs", "reports"]);

    // The service may not use the password grant.
    let refused = client
        .exchange_password(
            &ResourceOwnerUsername::new("alice".into()),
            &ResourceOwnerPassword::new(PASSWORD.into()),
        )
        .request_async(&http)
        .await;
    assert_eq!(
        error_code(refused),
        BasicErrorResponseType::UnauthorizedClient
    );
}

both_backends!(
    password_then_refresh_rotates,
    refresh_can_narrow_the_scope,
    password_errors_surface_as_typed_codes,
    client_credentials_for_a_service,
);
