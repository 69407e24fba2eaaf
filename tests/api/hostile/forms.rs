//! Rows about what a form holds: SQL metacharacters, odd unicode, NUL bytes, invalid UTF-8,
//! floods and sizes, and the form's own structure and percent-encoding.

use super::{
    BAD_CLIENT, BAD_GRANT, BAD_REQUEST, BAD_SCOPE, Ctx, FORM, Row, TOKEN, Table, UNSUPPORTED, form,
};
use crate::helpers::{PASSWORD, basic};

/// SQL metacharacters in every field a query could see: usernames (with the right password:
/// nothing may log in as alice by way of the username), passwords, client ids, scopes and
/// refresh tokens.
pub(super) fn sql_metacharacters(c: &Ctx, t: &mut Table) {
    let Ctx { gateway, .. } = c;
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
            BAD_GRANT,
        );
    }
    for password in ["' OR '1'='1", "x'); DROP TABLE users; --", "%", "\\'"] {
        t.login(
            &format!("bob, password {password:?}"),
            "bob",
            password,
            400,
            BAD_GRANT,
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
            BAD_CLIENT,
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
            BAD_CLIENT,
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
            BAD_CLIENT,
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
            BAD_SCOPE,
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
}

/// Long and odd unicode usernames, with the right password.
pub(super) fn unicode_usernames(_c: &Ctx, t: &mut Table) {
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
            BAD_GRANT,
        );
    }
    let long_e = "é".repeat(10_000);
    t.login(
        "username: 10,000 é (60 KB encoded)",
        &long_e,
        PASSWORD,
        413,
        BAD_REQUEST,
    );
    t.login(
        "bob, 10,000-character password",
        "bob",
        &"p".repeat(10_000),
        400,
        BAD_GRANT,
    );
}

/// NUL bytes, percent-encoded and raw, in values and names.
pub(super) fn nul_bytes(c: &Ctx, t: &mut Table) {
    let Ctx { gateway, pw, .. } = c;
    t.token_raw(
        "username with %00",
        format!("grant_type=password&username=ali%00ce&password={pw}"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "username ending in %00",
        format!("grant_type=password&username=alice%00&password={pw}"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "password %00",
        "grant_type=password&username=alice&password=%00",
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "password truncated by %00",
        format!("grant_type=password&username=alice&password={pw}%00junk"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "scope with %00",
        format!("grant_type=password&username=alice&password={pw}&scope=read%00admin"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "refresh_token with %00",
        "grant_type=refresh_token&refresh_token=tsr_%00abc",
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "parameter name with %00",
        format!("grant_type%00=password&username=alice&password={pw}"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "raw NUL byte",
        format!("grant_type=password&username=ali\0ce&password={pw}"),
        400,
        BAD_REQUEST,
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
        BAD_REQUEST,
    );
}

/// Percent-encoded and raw byte sequences that are not UTF-8.
pub(super) fn invalid_utf8(c: &Ctx, t: &mut Table) {
    let Ctx { pw, .. } = c;
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
            BAD_REQUEST,
        );
    }
    t.token_raw(
        "password %FF",
        "grant_type=password&username=alice&password=%FF",
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "parameter name %FF",
        format!("%FF=1&grant_type=password&username=alice&password={pw}"),
        400,
        BAD_REQUEST,
    );
    let mut raw_ff = b"grant_type=password&username=alice\xff\xfe&password=".to_vec();
    raw_ff.extend_from_slice(pw.as_bytes());
    t.token_raw("raw 0xFF 0xFE bytes", raw_ff, 400, BAD_REQUEST);
}

/// Floods of parameters and bodies over the size limit, with and without Content-Length.
pub(super) fn floods_and_sizes(c: &Ctx, t: &mut Table) {
    let Ctx { pw, .. } = c;
    let ten_thousand: String = (0..10_000).map(|i| format!("p{i}=1&")).collect();
    t.token_raw(
        "10,000 parameters",
        format!("grant_type=password&{ten_thousand}"),
        413,
        BAD_REQUEST,
    );
    let sixty_five: String = (0..65).map(|i| format!("&{i}")).collect();
    t.token_raw(
        "65 parameters within the size limit",
        format!("grant_type=password&username=alice&password={pw}{sixty_five}"),
        400,
        BAD_REQUEST,
    );
    let megabyte = format!(
        "grant_type=password&username=alice&password={}",
        "a".repeat(1 << 20)
    );
    t.token_raw("1 MB body", megabyte.clone(), 413, BAD_REQUEST);
    t.token_raw("1 MB of '&'", "&".repeat(1 << 20), 413, BAD_REQUEST);
    t.rows.push(Row {
        name: "1 MB chunked body without Content-Length".into(),
        path: TOKEN,
        auth: c.gw(),
        content_type: Some(FORM.into()),
        body: megabyte.into_bytes(),
        chunked: true,
        status: 413,
        expect: BAD_REQUEST,
    });
    t.token_raw("10,000 '&'", "&".repeat(10_000), 400, BAD_REQUEST);
}

/// Forms broken in their structure or their percent-encoding.
pub(super) fn structure_and_percent_encoding(c: &Ctx, t: &mut Table) {
    let Ctx { pw, .. } = c;
    t.token_raw("only '&&&&'", "&&&&", 400, BAD_REQUEST);
    t.token_raw("only '='", "=", 400, BAD_REQUEST);
    t.token_raw("only '=='", "==", 400, BAD_REQUEST);
    t.token_raw("'=password'", "=password", 400, BAD_REQUEST);
    t.token_raw("empty body", "", 400, BAD_REQUEST);
    t.token_raw("name without '='", "grant_type", 400, BAD_REQUEST);
    t.token_raw(
        "encoded '=' in the name",
        "grant_type%3Dpassword",
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "GRANT_TYPE upper case",
        format!("GRANT_TYPE=password&username=alice&password={pw}"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "grant_type[]",
        format!("grant_type[]=password&username=alice&password={pw}"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "'+grant_type' (leading space)",
        format!("+grant_type=password&username=alice&password={pw}"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "repeated grant_type",
        format!("grant_type=password&grant_type=refresh_token&username=alice&password={pw}"),
        400,
        BAD_REQUEST,
    );
    t.token_raw(
        "repeated password",
        format!("grant_type=password&username=alice&password=x&password={pw}"),
        400,
        BAD_REQUEST,
    );
    // Malformed escapes are kept literally (WHATWG form decoding), so they name no grant or user.
    t.token_raw(
        "grant_type %G1",
        format!("grant_type=%G1&username=alice&password={pw}"),
        400,
        UNSUPPORTED,
    );
    t.token_raw(
        "grant_type ending in a lone %",
        format!("grant_type=password%&username=alice&password={pw}"),
        400,
        UNSUPPORTED,
    );
    t.token_raw(
        "grant_type lone %",
        format!("grant_type=%&username=alice&password={pw}"),
        400,
        UNSUPPORTED,
    );
    t.token_raw(
        "grant_type 'pass%2'",
        format!("grant_type=pass%2&username=alice&password={pw}"),
        400,
        UNSUPPORTED,
    );
    t.token_raw(
        "username %G1",
        format!("grant_type=password&username=%G1&password={pw}"),
        400,
        BAD_GRANT,
    );
    t.token_raw(
        "username 'alice%'",
        format!("grant_type=password&username=alice%&password={pw}"),
        400,
        BAD_GRANT,
    );
    t.token_raw(
        "smuggled '&' inside grant_type",
        format!("grant_type=password%26username%3Dalice&password={pw}"),
        400,
        UNSUPPORTED,
    );
    t.token_raw(
        "';' as a separator",
        format!("grant_type=password;username=alice;password={pw}"),
        400,
        UNSUPPORTED,
    );
}
