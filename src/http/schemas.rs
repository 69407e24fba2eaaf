//! Schemas of what the handlers take apart or send as prepared bytes: types that exist only to
//! be described in the OpenAPI document, never built.

use utoipa::ToSchema;

// ---- request forms ------------------------------------------------------------------------

/// A token request (RFC 6749 §3.2), form-encoded, one of three grants. A parameter sent empty
/// counts as absent (so required ones are at least one character); a parameter sent twice is
/// `invalid_request`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum TokenRequest {
    AuthorizationCode(AuthorizationCodeGrant),
    Password(PasswordGrant),
    RefreshToken(RefreshTokenGrant),
    ClientCredentials(ClientCredentialsGrant),
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum AuthorizationCodeGrantType {
    AuthorizationCode,
}

/// Authorization code grant (RFC 6749 §4.1.3, RFC 7636 §4.5): the code from the authorization
/// response, once, within 60 s. With `openid`, the response carries an `id_token`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuthorizationCodeGrant {
    #[schema(inline)]
    grant_type: AuthorizationCodeGrantType,
    /// The code (`tsa_…`).
    #[schema(min_length = 1)]
    code: String,
    /// The PKCE verifier: 43 to 128 characters of `[A-Za-z0-9-._~]`.
    #[schema(min_length = 43, max_length = 128)]
    code_verifier: String,
    /// Required when the authorization request carried it, and then identical.
    #[schema(nullable = false)]
    redirect_uri: Option<String>,
    /// For `client_secret_post`, or alone for a public client.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum PasswordGrantType {
    Password,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum RefreshTokenGrantType {
    RefreshToken,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum ClientCredentialsGrantType {
    ClientCredentials,
}

/// Resource owner password credentials grant (RFC 6749 §4.3.2). Legacy: for gateways that
/// already hold the user's password; apps sign users in with the authorization code grant.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PasswordGrant {
    #[schema(inline)]
    grant_type: PasswordGrantType,
    /// The user's username (matched case-insensitively).
    #[schema(min_length = 1)]
    username: String,
    /// The user's password.
    #[schema(min_length = 1)]
    password: String,
    /// Space-separated scopes (RFC 6749 §3.3: each of `%x21 / %x23-5B / %x5D-7E`, at most 128
    /// characters); absent means every scope the client may use.
    #[schema(nullable = false, pattern = r"^[\x21\x23-\x5B\x5D-\x7E ]*$")]
    scope: Option<String>,
    /// For `client_secret_post`, or alone for a public client.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// Refresh grant (RFC 6749 §6). The refresh token rotates: the response carries a new one.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RefreshTokenGrant {
    #[schema(inline)]
    grant_type: RefreshTokenGrantType,
    /// The refresh token (`tsr_…`) from the last token response.
    #[schema(min_length = 1)]
    refresh_token: String,
    /// Narrows the new access token's scope; the refresh token keeps its original scope.
    #[schema(nullable = false, pattern = r"^[\x21\x23-\x5B\x5D-\x7E ]*$")]
    scope: Option<String>,
    /// For `client_secret_post`, or alone for a public client.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// Client credentials grant (RFC 6749 §4.4.2): the client acts for itself (`sub` is its id).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ClientCredentialsGrant {
    #[schema(inline)]
    grant_type: ClientCredentialsGrantType,
    /// Space-separated scopes (RFC 6749 §3.3: each of `%x21 / %x23-5B / %x5D-7E`, at most 128
    /// characters); absent means every scope the client may use.
    #[schema(nullable = false, pattern = r"^[\x21\x23-\x5B\x5D-\x7E ]*$")]
    scope: Option<String>,
    /// For `client_secret_post`.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// A revocation (RFC 7009 §2.1) or introspection (RFC 7662 §2.1) request, form-encoded.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenRequestByToken {
    /// An access token (JWT) or a refresh token (`tsr_…`).
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` or `refresh_token`. Accepted and ignored: the token's own form tells
    /// its kind.
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    /// For `client_secret_post` (or alone for a public client, revocation only).
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

// ---- response bodies served as prepared bytes ---------------------------------------------

/// A refused bearer token (RFC 6750 §3.1), as `/userinfo` answers it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BearerErrorBody {
    #[schema(inline)]
    error: BearerErrorCode,
    error_description: String,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum BearerErrorCode {
    InvalidToken,
    InsufficientScope,
}

/// A JSON Web Key Set (RFC 7517 §5): every key that signs now or signed a token still valid.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

/// A public signing key (RFC 7517 §4, RFC 7518 §6).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct Jwk {
    /// `EC` (ES256), `OKP` (EdDSA) or `RSA` (RS256).
    kty: String,
    /// Key id, as in the `kid` header of the tokens it signs.
    kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    alg: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    use_: String,
    /// `P-256` (EC) or `Ed25519` (OKP).
    #[schema(nullable = false)]
    crv: Option<String>,
    /// EC and OKP: the x coordinate or public key, base64url.
    #[schema(nullable = false)]
    x: Option<String>,
    /// EC: the y coordinate, base64url.
    #[schema(nullable = false)]
    y: Option<String>,
    /// RSA: the modulus, base64url.
    #[schema(nullable = false)]
    n: Option<String>,
    /// RSA: the public exponent, base64url.
    #[schema(nullable = false)]
    e: Option<String>,
}
