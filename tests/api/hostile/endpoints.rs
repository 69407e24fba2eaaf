//! Rows about what a request asks of an endpoint: grant types, refresh tokens that are not
//! the client's, client authentication, content types, and the revocation and introspection
//! endpoints, forged JWTs included.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::forged::forged_tokens;
use super::{
    BAD_CLIENT, BAD_REQUEST, Ctx, Expect, FORM, INTROSPECT, REVOKE, Table, UNSUPPORTED, form,
};
use crate::helpers::{PASSWORD, basic};

/// A refresh token of the right shape that was never issued.
fn not_ours() -> String {
    format!("tsr_{}", URL_SAFE_NO_PAD.encode([7u8; 32]))
}

/// alice's password grant as a form.
fn password_form() -> Vec<u8> {
    form(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ])
}

/// Grant types the server does not offer, or not to this client.
pub(super) fn grant_types(c: &Ctx, t: &mut Table) {
    let Ctx { access, .. } = c;
    t.token(
        "authorization_code with a redirect",
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("redirect_uri", "https://attacker.example/"),
        ],
        400,
        Expect::Error("unauthorized_client"),
    );
    t.token("implicit", &[("grant_type", "implicit")], 400, UNSUPPORTED);
    t.token(
        "token exchange",
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", access),
        ],
        400,
        UNSUPPORTED,
    );
    t.token(
        "client_credentials for a user-grant client",
        &[("grant_type", "client_credentials")],
        400,
        Expect::Error("unauthorized_client"),
    );
}

/// Refresh tokens that are not this client's to use.
pub(super) fn refresh_tokens_not_ours(c: &Ctx, t: &mut Table) {
    let Ctx {
        access,
        refresh,
        others_refresh,
        ..
    } = c;
    let not_ours = not_ours();
    t.refresh("refresh_token that is not ours", &not_ours);
    t.refresh("client-secret prefix", &format!("tsc_{}", &refresh[4..]));
    t.refresh("no prefix", &refresh[4..]);
    t.refresh("upper-case prefix", &format!("TSR_{}", &refresh[4..]));
    t.refresh(
        "10 KB refresh_token",
        &format!("tsr_{}", "A".repeat(10_240)),
    );
    t.refresh("another client's refresh_token", others_refresh);
    t.refresh("an access token as refresh_token", access);
    t.refresh("genuine refresh_token plus a space", &format!("{refresh} "));
    t.refresh("genuine refresh_token, last character changed", &{
        let mut s = refresh.clone();
        let last = s.pop().expect("char");
        s.push(if last == 'A' { 'B' } else { 'A' });
        s
    });
}

/// Broken, oversized, doubled and conflicting client authentication.
pub(super) fn client_authentication(c: &Ctx, t: &mut Table) {
    let Ctx {
        gateway,
        other,
        billing,
        access,
        ..
    } = c;
    let login_form = password_form();
    let header_rows: Vec<(&str, Vec<Vec<u8>>, u16, Expect)> = vec![
        (
            "Basic with a 3,000-character secret",
            vec![basic(&gateway.id, &"s".repeat(3000)).into_bytes()],
            401,
            BAD_CLIENT,
        ),
        (
            "Authorization over 4 KiB",
            vec![format!("Basic {}", "QUFB".repeat(1100)).into_bytes()],
            401,
            BAD_CLIENT,
        ),
        (
            "raw 0xFF in Authorization",
            vec![b"Basic \xff\xfe".to_vec()],
            401,
            BAD_CLIENT,
        ),
        (
            "Bearer with a genuine access token",
            vec![format!("Bearer {access}").into_bytes()],
            401,
            BAD_CLIENT,
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
            BAD_CLIENT,
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
            BAD_CLIENT,
        ),
        (
            "Basic ':' only",
            vec![format!("Basic {}", STANDARD.encode(":")).into_bytes()],
            401,
            BAD_CLIENT,
        ),
        (
            "Basic without credentials",
            vec![b"Basic".to_vec()],
            401,
            BAD_CLIENT,
        ),
        (
            "two Authorization headers",
            vec![
                c.gw().remove(0),
                basic(&other.id, &other.secret).into_bytes(),
            ],
            400,
            BAD_REQUEST,
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
        BAD_REQUEST,
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
        BAD_REQUEST,
    );
    t.token_with(
        "no client authentication",
        vec![],
        Some(FORM),
        login_form.clone(),
        401,
        BAD_CLIENT,
    );
    t.token_with(
        "password grant by a client_credentials-only client",
        vec![basic(&billing.id, &billing.secret).into_bytes()],
        Some(FORM),
        login_form.clone(),
        400,
        Expect::Error("unauthorized_client"),
    );
}

/// Bodies that are not `application/x-www-form-urlencoded` UTF-8.
pub(super) fn content_types(c: &Ctx, t: &mut Table) {
    let login_form = password_form();
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
        t.token_with(&format!("Content-Type {ct:?}"), c.gw(), ct, body, 400, BAD_REQUEST);
    }
}

/// The revocation endpoint: authentication, and tokens that are not there to revoke.
pub(super) fn revocation(c: &Ctx, t: &mut Table) {
    let Ctx {
        gateway,
        access,
        others_refresh,
        ..
    } = c;
    let g = c.gw();
    t.push(
        "revoke without client authentication",
        REVOKE,
        vec![],
        form(&[("token", "x")]),
        401,
        BAD_CLIENT,
    );
    t.push(
        "revoke with a wrong secret",
        REVOKE,
        vec![basic(&gateway.id, "tsc_wrong").into_bytes()],
        form(&[("token", "x")]),
        401,
        BAD_CLIENT,
    );
    t.push(
        "revoke with a Bearer token",
        REVOKE,
        vec![format!("Bearer {access}").into_bytes()],
        form(&[("token", access)]),
        401,
        BAD_CLIENT,
    );
    t.push(
        "revoke without a token",
        REVOKE,
        g.clone(),
        form(&[("token_type_hint", "refresh_token")]),
        400,
        BAD_REQUEST,
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
        form(&[("token", others_refresh)]),
        200,
        Expect::Empty,
    );
    t.push(
        "revoke a token with %00",
        REVOKE,
        g.clone(),
        b"token=tsr_%00".to_vec(),
        400,
        BAD_REQUEST,
    );
    t.push(
        "revoke with invalid UTF-8",
        REVOKE,
        g.clone(),
        b"token=%FF".to_vec(),
        400,
        BAD_REQUEST,
    );
    t.push(
        "revoke a 1 MB body",
        REVOKE,
        g.clone(),
        format!("token={}", "a".repeat(1 << 20)).into_bytes(),
        413,
        BAD_REQUEST,
    );
}

/// The introspection endpoint: authentication, permission, malformed and unknown tokens.
pub(super) fn introspection(c: &Ctx, t: &mut Table) {
    let Ctx { access, .. } = c;
    let g = c.gw();
    let not_ours = not_ours();
    t.push(
        "introspect without client authentication",
        INTROSPECT,
        vec![],
        form(&[("token", access)]),
        401,
        BAD_CLIENT,
    );
    t.push(
        "introspect as a client without the permission",
        INTROSPECT,
        g.clone(),
        form(&[("token", access)]),
        403,
        Expect::Error("unauthorized_client"),
    );
    t.push(
        "introspect without a token",
        INTROSPECT,
        vec![t.inspector.clone()],
        Vec::new(),
        400,
        BAD_REQUEST,
    );
    t.push(
        "introspect with %00",
        INTROSPECT,
        vec![t.inspector.clone()],
        b"token=a%00b".to_vec(),
        400,
        BAD_REQUEST,
    );
    t.push(
        "introspect a 1 MB body",
        INTROSPECT,
        vec![t.inspector.clone()],
        format!("token={}", "a".repeat(1 << 20)).into_bytes(),
        413,
        BAD_REQUEST,
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
}

/// Forged, foreign-key and tampered JWTs: each introspects as inactive.
pub(super) fn forged_jwts(c: &Ctx, t: &mut Table) {
    for (what, token) in forged_tokens(c.now, &c.alice_id, &c.jwks, &c.access) {
        t.introspect(
            &format!("introspect JWT: {what}"),
            &token,
            200,
            Expect::Inactive,
        );
    }
}
