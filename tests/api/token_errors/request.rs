//! The shape of a token request: grant type, parameters, content type, size (RFC 6749 §5.2).

use super::*;

async fn missing_grant_type_is_invalid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let response = app
        .token(
            Some(&client),
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    expect_error(response, 400, "invalid_request", "no grant_type").await;
    // RFC 6749 §3.1: an empty value is the same as an absent one.
    let response = app
        .token(
            Some(&client),
            &[
                ("grant_type", ""),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    expect_error(response, 400, "invalid_request", "empty grant_type").await;
}

async fn unknown_grant_types_are_unsupported(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    for grant in [
        "Authorization_Code",
        "implicit",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "PASSWORD",
        "Password",
        "password ",
        " password",
        "password\t",
        "refresh-token",
        "passwordx",
    ] {
        let response = app
            .token(
                Some(&client),
                &[
                    ("grant_type", grant),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        expect_error(
            response,
            400,
            "unsupported_grant_type",
            &format!("{grant:?}"),
        )
        .await;
    }
}

/// RFC 6749 §5.2: invalid_request covers unsupported parameter values "other than grant
/// type"; a grant type the server does not support, NUL or not, is unsupported_grant_type.
/// A NUL byte makes any parameter malformed, grant_type included: the form is refused as an
/// invalid request before the grant type is looked at, and the value is never truncated.
async fn grant_type_with_nul_is_a_malformed_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let response = app
        .token(
            Some(&client),
            &[
                ("grant_type", "password\u{0}"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    expect_error(response, 400, "invalid_request", "password\\0").await;
}

async fn repeated_parameters_are_invalid_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let auth = basic(&client.id, &client.secret);
    let pw = format!("password={}", PASSWORD.replace(' ', "+"));
    for body in [
        format!("grant_type=password&grant_type=password&username=alice&{pw}"),
        format!("grant_type=password&username=alice&username=alice&{pw}"),
        format!("grant_type=password&username=alice&{pw}&{pw}"),
        format!("grant_type=password&username=alice&{pw}&scope=read&scope=write"),
        // An empty repeat is still a repeat.
        format!("grant_type=password&grant_type=&username=alice&{pw}"),
        format!("grant_type=password&username=alice&{pw}&scope=&scope=read"),
    ] {
        let response = raw(&app, Some(FORM), Some(&auth), body.clone()).await;
        expect_error(response, 400, "invalid_request", &body).await;
    }
}

async fn only_form_bodies_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let auth = basic(&client.id, &client.secret);
    let form = serde_urlencoded::to_string(password_form()).expect("form");
    let json_body =
        json!({"grant_type": "password", "username": "alice", "password": PASSWORD}).to_string();
    let multipart = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\npassword\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{PASSWORD}\r\n--XyZ--\r\n"
    );
    let cases: Vec<(Option<&str>, String)> = vec![
        (Some("application/json"), json_body.clone()),
        (Some("application/json"), form.clone()),
        (Some("text/plain"), form.clone()),
        (Some("text/plain; charset=utf-8"), form.clone()),
        (Some("multipart/form-data; boundary=XyZ"), multipart),
        (None, form.clone()),
        (Some(""), form.clone()),
        (
            Some("application/x-www-form-urlencoded; charset=latin1"),
            form.clone(),
        ),
        (
            Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
            form.clone(),
        ),
        (Some("application/x-www-form-urlencodedx"), form.clone()),
        (Some("application/*"), form.clone()),
        (Some("*/*"), form.clone()),
    ];
    for (content_type, body) in cases {
        let response = raw(&app, content_type, Some(&auth), body).await;
        expect_error(
            response,
            400,
            "invalid_request",
            &format!("Content-Type {content_type:?}"),
        )
        .await;
    }
    // The form type is matched case-insensitively and charset=utf-8 is fine.
    for content_type in [
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/x-www-form-urlencoded;charset=\"UTF-8\"",
        "Application/X-WWW-Form-Urlencoded",
    ] {
        let response = raw(&app, Some(content_type), Some(&auth), form.clone()).await;
        ok_json(response, content_type).await;
    }
}

async fn oversized_body_is_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let auth = basic(&client.id, &client.secret);
    let padding = "x".repeat(16 * 1024);
    let body = format!("grant_type=password&username=alice&password=pw&pad={padding}");
    let response = raw(&app, Some(FORM), Some(&auth), body).await;
    expect_error(response, 413, "invalid_request", "17 KiB body").await;
    // Exactly at the limit is read (and then refused for what it says, not for its size).
    let head = "grant_type=password&username=alice&password=wrong-password&pad=";
    let body = format!("{head}{}", "y".repeat(16 * 1024 - head.len()));
    assert_eq!(body.len(), 16 * 1024);
    let response = raw(&app, Some(FORM), Some(&auth), body).await;
    expect_error(response, 400, "invalid_grant", "16 KiB body").await;
}

async fn missing_credentials_are_invalid_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let cases: [(&str, &[(&str, &str)]); 5] = [
        (
            "no username",
            &[("grant_type", "password"), ("password", PASSWORD)],
        ),
        (
            "no password",
            &[("grant_type", "password"), ("username", "alice")],
        ),
        ("neither", &[("grant_type", "password")]),
        (
            "empty username",
            &[
                ("grant_type", "password"),
                ("username", ""),
                ("password", PASSWORD),
            ],
        ),
        (
            "empty password",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ""),
            ],
        ),
    ];
    for (what, form) in cases {
        let response = app.token(Some(&client), form).await;
        expect_error(response, 400, "invalid_request", what).await;
    }
    let response = app
        .token(Some(&client), &[("grant_type", "refresh_token")])
        .await;
    expect_error(response, 400, "invalid_request", "no refresh_token").await;
}

both_backends!(
    missing_grant_type_is_invalid_request,
    unknown_grant_types_are_unsupported,
    grant_type_with_nul_is_a_malformed_request,
    repeated_parameters_are_invalid_requests,
    only_form_bodies_are_accepted,
    oversized_body_is_413,
    missing_credentials_are_invalid_requests,
);
