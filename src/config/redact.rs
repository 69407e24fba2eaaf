//! Database URLs fit to print: the passwords they may hold, hidden.

/// Hides the passwords of a database URL: the one in its user info
/// (`postgres://user:***@host/db`) and the values of query parameters named like a password
/// (`?password=***`, `?sslpassword=***`, any case).
pub fn redact_url(url: &str) -> String {
    // The last `@` ends the user info even when the password holds an unencoded `@`, `/` or `?`;
    // an `@` in the query makes this hide more than the password, never less.
    let (head, tail) = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                (format!("{scheme}://{user}:***@"), host)
            }
            None => (format!("{scheme}://"), rest),
        },
        // No `scheme://` (a typo such as `postgres:/u:p@h`): whatever precedes an `@` may be
        // user info.
        None => match url.rsplit_once('@') {
            Some((_, host)) => ("***@".to_owned(), host),
            None => (String::new(), url),
        },
    };
    let redacted = match tail.split_once('?') {
        Some((path, query)) => format!("{head}{path}?{}", redact_query(query)),
        None => format!("{head}{tail}"),
    };
    hide_password_pairs(&redacted)
}

/// Fails closed: a `password=value` pair left anywhere (after an `@` the parse above took for
/// the end of the user info, or in a libpq `key=value` string) has its value hidden.
fn hide_password_pairs(text: &str) -> String {
    static PAIR: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)((?:^|[?&;\s])[a-z0-9_%]*password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)",
        )
        .ok()
    });
    match PAIR.as_ref() {
        Some(pair) => pair
            .replace_all(text, |c: &regex::Captures<'_>| {
                if &c[2] == "***" {
                    c[0].to_owned()
                } else {
                    format!("{}***", &c[1])
                }
            })
            .into_owned(),
        // The pattern is a constant that compiles; were it not to, hide everything.
        None => "***".to_owned(),
    }
}

/// `a=1&password=***`: the values of password parameters hidden, everything else kept.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_password_key(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `password`, `sslpassword`, `PassWord`, `ssl%70assword`: any key ending in "password" once
/// decoded, whatever its case.
pub(super) fn is_password_key(key: &str) -> bool {
    percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .to_ascii_lowercase()
        .ends_with("password")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_hides_passwords_in_the_query() {
        assert_eq!(
            redact_url("postgres://db/x?user=app&password=hunter2&sslmode=require"),
            "postgres://db/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db/x?sslmode=verify-full&sslpassword=keypass"),
            "postgres://app:***@db/x?sslmode=verify-full&sslpassword=***"
        );
        // Keys match in any case and percent-encoded.
        assert_eq!(
            redact_url("postgresql://db/x?PASSWORD=a&SslPassword=b&pass%77ord=c"),
            "postgresql://db/x?PASSWORD=***&SslPassword=***&pass%77ord=***"
        );
        // Both places at once; a password holding `?` and `@` stays hidden.
        assert_eq!(
            redact_url("postgres://app:p?w@d@db/x?password=q"),
            "postgres://app:***@db/x?password=***"
        );
        // Other parameters, and URLs without a query or a scheme, are left alone.
        assert_eq!(
            redact_url("sqlite:/var/lib/tessera.db?mode=rwc"),
            "sqlite:/var/lib/tessera.db?mode=rwc"
        );
        assert_eq!(
            redact_url("sqlite://t.db?password=x"),
            "sqlite://t.db?password=***"
        );
        // An `@` in the query (Azure's user@server form) or a libpq key=value string.
        for (url, secret) in [
            (
                "postgresql://db.invalid:5432/tessera?user=app@myserver&password=hunter2",
                "hunter2",
            ),
            (
                "postgres://db.invalid/x?password=hunter3&application_name=tessera@host1",
                "hunter3",
            ),
            (
                "host=db.invalid user=app password=hunter4 dbname=x",
                "hunter4",
            ),
            ("host=db user=app password='hunter 5' dbname=x", "hunter 5"),
            ("postgres:/app:hunter6@db/x", "hunter6"),
            ("postgresql:app:hunter7@db/x", "hunter7"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} became {shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(
            redact_url("postgres://db/x?passwords_file=/p&password"),
            "postgres://db/x?passwords_file=/p&password"
        );
        for secret in ["hunter2", "keypass"] {
            let url = format!("postgres://u:{secret}@h/d?sslpassword={secret}&Password={secret}");
            assert!(!redact_url(&url).contains(secret), "{url}");
        }
    }
}
